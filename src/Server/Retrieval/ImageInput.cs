using Serving.Runtime.Vision;
using Serving.Server.Hosting;
using Serving.Server.Http;

namespace Serving.Server.Retrieval;

/// <summary>Images as requests carry them: <c>data:image/…;base64,…</c> URLs or plain base64.</summary>
public static class ImageInput
{
    public static byte[] DecodeBase64(string value, string param)
    {
        string payload = value;
        if (value.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            int comma = value.IndexOf(',');
            if (comma < 0 || !value.AsSpan(0, comma).EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
            {
                throw ApiException.Invalid(param, "an image data URL must look like data:image/png;base64,<data>");
            }

            payload = value[(comma + 1)..];
        }
        else if (value.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            throw ApiException.Invalid(param, "images are not fetched from URLs; send them as data:image/...;base64 URLs or plain base64");
        }

        try
        {
            byte[] bytes = Convert.FromBase64String(payload);
            return bytes.Length > 0 ? bytes : throw ApiException.Invalid(param, "the image is empty");
        }
        catch (FormatException)
        {
            throw ApiException.Invalid(param, "the image is not valid base64");
        }
    }

    /// <summary>
    /// A request's images, decoded for a model whose preprocessing resizes the shortest side to
    /// <paramref name="shortestSide"/>. Every header is read first and the pixels summed: a request
    /// past <see cref="RetrievalOptions.MaxPixelsPerRequest"/> is refused (413, naming the image that
    /// crosses it) before any is decoded, since decoding costs CPU per stored pixel however small the file.
    /// </summary>
    public static RgbImage[] DecodeAll(IReadOnlyList<(byte[] Bytes, string Param)> images, RetrievalOptions options, int shortestSide)
    {
        long total = 0;
        foreach (var (bytes, param) in images)
        {
            var (width, height) = Guard(param, () => ImageDecoder.ReadSize(bytes));
            total += (long)width * height;
            if (total > options.MaxPixelsPerRequest)
            {
                throw new ApiException(StatusCodes.Status413PayloadTooLarge,
                    $"The images of this request hold over {options.MaxPixelsPerRequest} pixels (Serving:Retrieval:MaxPixelsPerRequest) by {param} ({width}×{height}); send fewer or smaller images.",
                    param, "too_many_pixels");
            }
        }

        return [.. images.Select(image => Guard(image.Param, () => ImageDecoder.Decode(image.Bytes, options.MaxImagePixels, shortestSide)))];
    }

    private static T Guard<T>(string param, Func<T> decode)
    {
        try
        {
            return decode();
        }
        catch (ImageDecodeException e)
        {
            throw ApiException.Invalid(param, e.Message);
        }
    }
}
