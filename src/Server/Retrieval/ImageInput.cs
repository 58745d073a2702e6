using Serving.Runtime.Vision;

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

    public static RgbImage Decode(byte[] bytes, long maxPixels, string param)
    {
        try
        {
            return ImageDecoder.Decode(bytes, maxPixels);
        }
        catch (ImageDecodeException e)
        {
            throw ApiException.Invalid(param, e.Message);
        }
    }
}
