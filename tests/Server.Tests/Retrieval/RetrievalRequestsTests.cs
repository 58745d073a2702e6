using System.Text;
using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;

namespace Serving.Server.Tests.Retrieval;

/// <summary>The typed bodies of the embeddings and collection routes: a value of the wrong type is a 400 naming the field.</summary>
public sealed class RetrievalRequestsTests(InMemoryServerFixture fixture) : IClassFixture<InMemoryServerFixture>
{
    private const string Image = "iVBORw0KGgo=";

    public static TheoryData<string, string, string> WrongTypes => new()
    {
        { "/v1/embeddings", """{"model":5,"input":"x"}""", "model" },
        { "/v1/embeddings", """{"model":"clip-tiny","input":"x","encoding_format":1}""", "encoding_format" },
        { "/v1/embeddings", """{"model":"clip-tiny","input":[{"type":"text","text":7}]}""", "input[0].text" },
        { "/v1/collections", """{"name":5}""", "name" },
        { "/v1/collections", """{"name":"typed-a","model":"clip-tiny","debias":"x"}""", "debias" },
        { "/v1/collections", """{"name":"typed-b","model":"clip-tiny","debias":{"concepts":[{"name":1,"groups":[["a"],["b"]]}]}}""", "debias.concepts[0].name" },
        { "/v1/collections", """{"name":"typed-c","model":"clip-tiny","debias":{"concepts":[{"groups":[[1],["b"]]}]}}""", "debias.concepts[0].groups[0][0]" },
        { "/v1/collections", """{"name":"typed-d","model":"clip-tiny","debias":{"concepts":[{"groups":[{"prompts":["a"],"nearest_images":"5","reference_collection":"c"},["b"]]}]}}""", "debias.concepts[0].groups[0].nearest_images" },
        { "/v1/collections/typed/items", """{"items":[{"image":5}]}""", "items[0].image" },
        { "/v1/collections/typed/items", $$"""{"items":[{"image":"{{Image}}","metadata":[1]}]}""", "items[0].metadata" },
        { "/v1/collections/typed/items", """{"items":{"image":"x"}}""", "items" },
        { "/v1/collections/typed/search", """{"text":"a","top_k":"5"}""", "top_k" },
        { "/v1/collections/typed/search", """{"vector":[1,"a"]}""", "vector[1]" },
        { "/v1/collections/typed/search", """{"text":"a","filter":5}""", "filter" },
        { "/v1/collections/typed/search", """{"text":"a","debias":"yes"}""", "debias" },
    };

    [Theory]
    [MemberData(nameof(WrongTypes))]
    public async Task AValueOfTheWrongTypeIsA400NamingTheField(string path, string body, string param)
    {
        await fixture.Server.PostAsync("/v1/collections", new JsonObject { ["name"] = "typed", ["model"] = "clip-tiny" });
        var answer = await RawHttp.PostAsync(fixture.Server.Client, path, Encoding.UTF8.GetBytes(body));
        Assert.Equal(param, RawHttp.AssertError(answer, 400));
    }

    [Fact]
    public async Task ACreatedCollectionIs201()
    {
        var (status, body) = await fixture.Server.PostAsync("/v1/collections", new JsonObject { ["name"] = "typed-created", ["model"] = "clip-tiny" });
        Assert.Equal(201, status);
        Assert.Equal("typed-created", body["name"]!.GetValue<string>());
    }
}
