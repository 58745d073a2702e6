using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using SkiaSharp;

namespace Serving.Server.Tests.Apis;

public sealed class RetrievalApiTests(InMemoryServerFixture fixture) : IClassFixture<InMemoryServerFixture>
{
    private InMemoryServer Server => fixture.Server;

    private static JsonObject Item(string id, SKColor colour, string name) => new()
    {
        ["id"] = id,
        ["image"] = InMemoryServer.ImageUrl(colour),
        ["metadata"] = new JsonObject { ["colour"] = name },
    };

    private async Task CreateAsync(string name, JsonObject? extra = null)
    {
        var body = extra ?? [];
        body["name"] = name;
        body["model"] = "clip-tiny";
        var (status, created) = await Server.PostAsync("/v1/collections", body);
        Assert.True(status == 201, created.ToJsonString());
    }

    private async Task UploadColoursAsync(string name)
    {
        var (status, body) = await Server.PostAsync($"/v1/collections/{name}/items", new JsonObject
        {
            ["items"] = new JsonArray(Item("r", SKColors.Red, "red"), Item("g", SKColors.Lime, "green"), Item("b", SKColors.Blue, "blue")),
        });
        Assert.Equal(200, status);
        Assert.Equal(["r", "g", "b"], body["ids"]!.AsArray().Select(v => v!.GetValue<string>()));
    }

    [Fact]
    public async Task UploadedImagesAreFoundByImageVectorAndFilter()
    {
        await CreateAsync("colours");
        await UploadColoursAsync("colours");

        var (status, hits) = await Server.PostAsync("/v1/collections/colours/search", new JsonObject { ["image"] = InMemoryServer.ImageUrl(SKColors.Red), ["top_k"] = 3 });
        Assert.Equal(200, status);
        JsonArray list = hits["hits"]!.AsArray();
        Assert.Equal("r", list[0]!["id"]!.GetValue<string>());
        Assert.Equal("red", list[0]!["metadata"]!["colour"]!.GetValue<string>());
        Assert.Equal(3, list.Count);
        Assert.True(list[0]!["score"]!.GetValue<float>() >= list[1]!["score"]!.GetValue<float>());

        var (_, item) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/colours/items/b?include_vector=true");
        var (_, byVector) = await Server.PostAsync("/v1/collections/colours/search", new JsonObject { ["vector"] = item["embedding"]!.DeepClone(), ["top_k"] = 1 });
        Assert.Equal("b", byVector["hits"]![0]!["id"]!.GetValue<string>());

        var (_, filtered) = await Server.PostAsync("/v1/collections/colours/search", new JsonObject
        {
            ["image"] = InMemoryServer.ImageUrl(SKColors.Red), ["filter"] = new JsonObject { ["colour"] = "green" },
        });
        Assert.Equal(["g"], filtered["hits"]!.AsArray().Select(h => h!["id"]!.GetValue<string>()));
    }

    [Fact]
    public async Task DeletedItemsAndCollectionsAreGone()
    {
        await CreateAsync("deleting");
        await UploadColoursAsync("deleting");
        Assert.Equal(200, (await Server.SendAsync(HttpMethod.Delete, "/v1/collections/deleting/items/g")).Status);
        InMemoryServer.AssertError(await Server.SendAsync(HttpMethod.Get, "/v1/collections/deleting/items/g"), 404);
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/deleting");
        Assert.Equal(2, collection["count"]!.GetValue<int>());
        Assert.Equal(200, (await Server.SendAsync(HttpMethod.Delete, "/v1/collections/deleting")).Status);
        InMemoryServer.AssertError(await Server.SendAsync(HttpMethod.Get, "/v1/collections/deleting"), 404);
    }

    [Fact]
    public async Task UploadingAnIdAgainReplacesTheItem()
    {
        await CreateAsync("upsert");
        await UploadColoursAsync("upsert");
        var (status, _) = await Server.PostAsync("/v1/collections/upsert/items", new JsonObject { ["items"] = new JsonArray(Item("r", SKColors.Blue, "now blue")) });
        Assert.Equal(200, status);
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/upsert");
        Assert.Equal(3, collection["count"]!.GetValue<int>());
        var (_, hits) = await Server.PostAsync("/v1/collections/upsert/search", new JsonObject
        {
            ["image"] = InMemoryServer.ImageUrl(SKColors.Blue), ["filter"] = new JsonObject { ["colour"] = "now blue" },
        });
        Assert.Equal(["r"], hits["hits"]!.AsArray().Select(h => h!["id"]!.GetValue<string>()));
        var (_, generated) = await Server.PostAsync("/v1/collections/upsert/items", new JsonObject { ["items"] = new JsonArray(new JsonObject { ["image"] = InMemoryServer.ImageUrl(SKColors.Gray) }) });
        Assert.Equal(32, generated["ids"]![0]!.GetValue<string>().Length);
    }

    [Fact]
    public async Task ABatchWithOneBadImageWritesNothing()
    {
        await CreateAsync("atomic");
        var bad = new JsonObject { ["image"] = Convert.ToBase64String("not an image"u8.ToArray()) };
        var response = await Server.PostAsync("/v1/collections/atomic/items", new JsonObject { ["items"] = new JsonArray(Item("ok", SKColors.Red, "red"), bad) });
        Assert.Equal("items[1].image", InMemoryServer.AssertError(response, 400));
        var tooBig = new JsonObject { ["image"] = InMemoryServer.ImageUrl(SKColors.Red, 200, 150) };
        response = await Server.PostAsync("/v1/collections/atomic/items", new JsonObject { ["items"] = new JsonArray(Item("ok", SKColors.Red, "red"), tooBig) });
        Assert.Contains("30000 pixels", response.Body["error"]!["message"]!.GetValue<string>());
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/atomic");
        Assert.Equal(0, collection["count"]!.GetValue<int>());
        InMemoryServer.AssertError(await Server.SendAsync(HttpMethod.Get, "/v1/collections/atomic/items/ok"), 404);
    }

    [Fact]
    public async Task BadRequestsAreOpenAiShaped4xx()
    {
        await CreateAsync("strict");
        await UploadColoursAsync("strict");
        InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/missing/search", new JsonObject { ["text"] = "x" }), 404);
        InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/missing/items", new JsonObject { ["items"] = new JsonArray() }), 404);
        Assert.Equal("name", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections", new JsonObject { ["name"] = "strict", ["model"] = "clip-tiny" }), 409));
        Assert.Equal("model", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections", new JsonObject { ["name"] = "other", ["model"] = "tiny" }), 404));
        Assert.Equal("name", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections", new JsonObject { ["name"] = "../x", ["model"] = "clip-tiny" }), 400));
        Assert.Equal("vector", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/strict/search", new JsonObject { ["vector"] = new JsonArray(1, 2, 3) }), 400));
        Assert.Equal("text", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/strict/search", new JsonObject { ["text"] = " " }), 400));
        Assert.Equal("query", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/strict/search", new JsonObject { ["text"] = "a", ["vector"] = new JsonArray(1) }), 400));
        Assert.Equal("top_k", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/strict/search", new JsonObject { ["text"] = "a", ["top_k"] = 0 }), 400));
        Assert.Equal("debias", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/strict/search", new JsonObject { ["text"] = "a", ["debias"] = true }), 400));
        var tooMany = new JsonArray([.. Enumerable.Range(0, 65).Select(i => (JsonNode)Item($"i{i}", SKColors.Red, "red"))]);
        Assert.Equal("items", InMemoryServer.AssertError(await Server.PostAsync("/v1/collections/strict/items", new JsonObject { ["items"] = tooMany }), 400));
        using var content = new StringContent("{not json", System.Text.Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await Server.Client.PostAsync("/v1/collections/strict/search", content);
        Assert.Equal(400, (int)response.StatusCode);
    }

    [Theory]
    [InlineData("a/b")]
    [InlineData("a\\b")]
    [InlineData("a\u0000b")]
    [InlineData("tab\there")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("")]
    public async Task IdsThatNoPathCanAddressAreRefusedAtUpload(string id)
    {
        string name = "ids-" + Guid.NewGuid().ToString("N")[..8];
        await CreateAsync(name);
        var items = new JsonArray(Item("fine", SKColors.Red, "red"), Item(id, SKColors.Blue, "blue"));
        Assert.Equal("items[1].id", InMemoryServer.AssertError(await Server.PostAsync($"/v1/collections/{name}/items", new JsonObject { ["items"] = items }), 400));

        using var form = new MultipartFormDataContent { { new ByteArrayContent(InMemoryServer.Png(SKColors.Red)), "files", "red.png" } };
        form.Add(new StringContent(new JsonArray(id).ToJsonString()), "ids");
        using HttpResponseMessage multipart = await Server.Client.PostAsync($"/v1/collections/{name}/items", form);
        var error = await OpenAiErrorReader.Read(multipart);
        Assert.Equal(400, (int)multipart.StatusCode);
        Assert.Equal("ids[0]", error.Param);
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, $"/v1/collections/{name}");
        Assert.Equal(0, collection["count"]!.GetValue<int>());
        Assert.Equal(200, (await Server.PostAsync($"/v1/collections/{name}/items", new JsonObject { ["items"] = new JsonArray(Item(new string('x', 256), SKColors.Red, "red")) })).Status);
        Assert.Equal("items[0].id", InMemoryServer.AssertError(await Server.PostAsync($"/v1/collections/{name}/items", new JsonObject { ["items"] = new JsonArray(Item(new string('x', 257), SKColors.Red, "red")) }), 400));
    }

    public static TheoryData<string, string> MalformedMultipart() => new()
    {
        { "multipart/form-data", "--b\r\nContent-Disposition: form-data; name=\"ids\"\r\n\r\n[]\r\n--b--\r\n" },
        { "multipart/form-data; boundary=" + new string('b', 71), "--b\r\n\r\n" },
        { "multipart/form-data; boundary=other", "--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\nxx\r\n--b--\r\n" },
        { "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\nxxxxxxxx" },
        { "multipart/form-data; boundary=b", string.Concat(Enumerable.Range(0, 1025).Select(i => $"--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n1\r\n")) + "--b--\r\n" },
    };

    [Theory]
    [MemberData(nameof(MalformedMultipart))]
    public async Task MalformedMultipartIsA400(string contentType, string body)
    {
        string name = "form-" + Guid.NewGuid().ToString("N")[..8];
        await CreateAsync(name);
        var answer = await RawHttp.PostAsync(Server.Client, $"/v1/collections/{name}/items", System.Text.Encoding.UTF8.GetBytes(body), contentType);
        RawHttp.AssertError(answer, 400);
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, $"/v1/collections/{name}");
        Assert.Equal(0, collection["count"]!.GetValue<int>());
    }

    [Fact]
    public async Task MultipartUploadsTakeFilesMetadataAndIds()
    {
        await CreateAsync("multipart");
        using var form = new MultipartFormDataContent();
        foreach (var (colour, name) in new[] { (SKColors.Red, "red.png"), (SKColors.Blue, "blue.png") })
        {
            var file = new ByteArrayContent(InMemoryServer.Png(colour));
            file.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            form.Add(file, "files", name);
        }

        form.Add(new StringContent("""[{"colour":"red"},{"colour":"blue"}]"""), "metadata");
        form.Add(new StringContent("""["red-1","blue-1"]"""), "ids");
        using HttpResponseMessage response = await Server.Client.PostAsync("/v1/collections/multipart/items", form);
        Assert.Equal(200, (int)response.StatusCode);
        var (_, item) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/multipart/items/blue-1");
        Assert.Equal("blue", item["metadata"]!["colour"]!.GetValue<string>());
    }

    [Fact]
    public async Task DebiasedCollectionsSearchWithTheTransformAndCacheTextQueries()
    {
        var debias = new JsonObject
        {
            ["method"] = "wring",
            ["concepts"] = new JsonArray(new JsonObject
            {
                ["name"] = "colour",
                ["groups"] = new JsonArray(new JsonArray("a photo of something red"), new JsonArray("a photo of something blue")),
            }),
        };
        await CreateAsync("fair", new JsonObject { ["debias"] = debias });
        await UploadColoursAsync("fair");
        var embedder = (Serving.Server.Retrieval.ClipEmbedder)Server.Factory.Services.GetService(typeof(Serving.Server.Retrieval.ClipEmbedder))!;
        long before = embedder.CacheHits;
        var (status, debiased) = await Server.PostAsync("/v1/collections/fair/search", new JsonObject { ["text"] = "A   photo of a car" });
        var (_, again) = await Server.PostAsync("/v1/collections/fair/search", new JsonObject { ["text"] = "a photo of a CAR" });
        Assert.Equal(200, status);
        Assert.Equal(before + 1, embedder.CacheHits);
        Assert.Equal(debiased.ToJsonString(), again.ToJsonString());
        var (_, raw) = await Server.PostAsync("/v1/collections/fair/search", new JsonObject { ["text"] = "a photo of a car", ["debias"] = false });
        Assert.NotEqual(debiased["hits"]![0]!["score"]!.GetValue<float>(), raw["hits"]![0]!["score"]!.GetValue<float>());
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/fair");
        Assert.Equal("wring", collection["debias"]!["method"]!.GetValue<string>());
    }

    [Fact]
    public async Task ConceptGroupsCanComeFromReferenceImages()
    {
        await CreateAsync("reference");
        await UploadColoursAsync("reference");
        var groups = new JsonArray(
            new JsonObject { ["prompts"] = new JsonArray("something red"), ["nearest_images"] = 2, ["reference_collection"] = "reference" },
            new JsonObject { ["images"] = new JsonArray(InMemoryServer.ImageUrl(SKColors.Blue)) });
        var debias = new JsonObject { ["method"] = "projection", ["concepts"] = new JsonArray(new JsonObject { ["name"] = "colour", ["groups"] = groups }) };
        await CreateAsync("imagegroups", new JsonObject { ["debias"] = debias.DeepClone() });
        var (_, collection) = await Server.SendAsync(HttpMethod.Get, "/v1/collections/imagegroups");
        JsonNode shown = collection["debias"]!["concepts"]![0]!["groups"]!;
        Assert.Equal(2, shown[0]!["nearest_images"]!.GetValue<int>());
        Assert.Equal(1, shown[1]!["images"]!.GetValue<int>());
        Assert.Null(collection["debias"]!["concepts"]![0]!["directions"]);

        debias["concepts"]![0]!["groups"]![0]!["reference_collection"] = "absent";
        var refused = await Server.PostAsync("/v1/collections", new JsonObject { ["name"] = "refused", ["model"] = "clip-tiny", ["debias"] = debias });
        Assert.Equal("debias.concepts[0].groups[0].reference_collection", InMemoryServer.AssertError(refused, 400));
        InMemoryServer.AssertError(await Server.SendAsync(HttpMethod.Get, "/v1/collections/refused"), 404);
    }
}
