using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Retrieval;

/// <summary>Images are paid for by their pixels, not their bytes: a per-request pixel budget, checked from the headers before decoding.</summary>
public sealed class ImageBudgetTests
{
    private static JsonObject Item(string id, int size) =>
        new() { ["id"] = id, ["image"] = InMemoryServer.ImageUrl(SKColors.Teal, size, size) };

    [Fact]
    public async Task AnUploadWhoseImagesSumPastTheBudgetIs413NamingTheItemThatCrossesIt()
    {
        using var server = new InMemoryServer(null, ("Serving:Retrieval:MaxPixelsPerRequest", "20000"));
        await server.PostAsync("/v1/collections", new JsonObject { ["name"] = "budget", ["model"] = "clip-tiny" });
        var answer = await server.PostAsync("/v1/collections/budget/items", new JsonObject
        {
            ["items"] = new JsonArray(Item("a", 100), Item("b", 100), Item("c", 100)),
        });
        Assert.Equal("items[2].image", InMemoryServer.AssertError(answer, 413));
        Assert.Equal("too_many_pixels", answer.Body["error"]!["code"]!.GetValue<string>());
        Assert.Contains("MaxPixelsPerRequest", answer.Body["error"]!["message"]!.GetValue<string>());
        var (_, collection) = await server.SendAsync(HttpMethod.Get, "/v1/collections/budget");
        Assert.Equal(0, collection["count"]!.GetValue<int>());

        var two = await server.PostAsync("/v1/collections/budget/items", new JsonObject { ["items"] = new JsonArray(Item("a", 100), Item("b", 100)) });
        Assert.Equal(200, two.Status);
    }

    [Fact]
    public async Task EmbeddingsCountThePixelsOfEveryImageInput()
    {
        using var server = new InMemoryServer(null, ("Serving:Retrieval:MaxPixelsPerRequest", "15000"));
        JsonObject Image(int size) => new() { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = InMemoryServer.ImageUrl(SKColors.Teal, size, size) } };
        var answer = await server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "clip-tiny", ["input"] = new JsonArray("a text", Image(100), "b", Image(100)) });
        Assert.Equal("input[3]", InMemoryServer.AssertError(answer, 413));
    }

    [Fact]
    public async Task AHugeFlatPngIsEmbeddedAndATruncatedBmpIsRefusedNamingTheInput()
    {
        using var server = new InMemoryServer();
        using var bitmap = new SKBitmap(new SKImageInfo(5000, 5000, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        bitmap.Erase(SKColors.Teal);
        using SKData png = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        var huge = await server.PostAsync("/v1/embeddings", new JsonObject
        {
            ["model"] = "clip-tiny",
            ["input"] = new JsonArray(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = "data:image/png;base64," + Convert.ToBase64String(png.ToArray()) } }),
        });
        Assert.Equal(200, huge.Status);

        byte[] bmp = new byte[54];
        "BM"u8.CopyTo(bmp);
        BitConverter.GetBytes(54 + 15_000 * 5000).CopyTo(bmp, 2);
        BitConverter.GetBytes(54).CopyTo(bmp, 10);
        BitConverter.GetBytes(40).CopyTo(bmp, 14);
        BitConverter.GetBytes(5000).CopyTo(bmp, 18);
        BitConverter.GetBytes(5000).CopyTo(bmp, 22);
        BitConverter.GetBytes((short)1).CopyTo(bmp, 26);
        BitConverter.GetBytes((short)24).CopyTo(bmp, 28);
        var truncated = await server.PostAsync("/v1/embeddings", new JsonObject
        {
            ["model"] = "clip-tiny",
            ["input"] = new JsonArray("a text", new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = "data:image/bmp;base64," + Convert.ToBase64String(bmp) } }),
        });
        Assert.Equal("input[1]", InMemoryServer.AssertError(truncated, 400));
        Assert.Contains("truncated", truncated.Body["error"]!["message"]!.GetValue<string>());
    }
}
