using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Serving.Server.Apis.OpenAi;
using Serving.Server.Retrieval;

namespace Serving.Server.Tests.Hosting;

public class ServingHostExtensionsTests
{
    [Fact]
    public void EveryRequestBodyIsReadBySourceGeneratedMetadata()
    {
        using var server = new Apis.InMemoryServer();
        var json = server.Factory.Services.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
        Type[] bodies =
        [
            typeof(ChatCompletionRequest), typeof(CompletionRequest), typeof(TokenizeRequest), typeof(DetokenizeRequest),
            typeof(EmbeddingsRequest), typeof(CreateCollectionRequest), typeof(UploadItemsRequest), typeof(SearchRequest),
        ];
        foreach (Type body in bodies)
        {
            Assert.True(json.GetTypeInfo(body).OriginatingResolver is JsonSerializerContext, $"{body.Name} is read by reflection");
        }
    }
}
