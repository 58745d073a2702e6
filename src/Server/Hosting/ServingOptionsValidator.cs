using Microsoft.Extensions.Options;
using Serving.Runtime.Models;

namespace Serving.Server.Hosting;

/// <summary>Checks what data annotations cannot: model entries, unique ids, folders that exist.</summary>
public sealed class ServingOptionsValidator : IValidateOptions<ServingOptions>
{
    public ValidateOptionsResult Validate(string? name, ServingOptions options)
    {
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.DataDirectory))
        {
            failures.Add("Serving:DataDirectory must name a folder.");
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < options.Models.Count; i++)
        {
            ModelOptions model = options.Models[i];
            if (string.IsNullOrWhiteSpace(model.Id))
            {
                failures.Add($"Serving:Models:{i}:Id is empty.");
            }
            else if (!ids.Add(model.Id))
            {
                failures.Add($"Serving:Models:{i}:Id '{model.Id}' is used twice.");
            }

            if (string.IsNullOrWhiteSpace(model.Path))
            {
                failures.Add($"Serving:Models:{i}:Path is empty.");
            }
            else if (!Directory.Exists(model.Path))
            {
                failures.Add($"Serving:Models:{i}:Path '{model.Path}' is not a folder.");
            }

            if (model.Dtype is { } dtype && !OnnxVariant.IsKnown(dtype))
            {
                failures.Add($"Serving:Models:{i}:Dtype '{dtype}' is not one of {string.Join(", ", OnnxVariant.Dtypes)}.");
            }
        }

        if (options.KvCompression.Validate(slidingSlots: 0) is { } compression)
        {
            string key = string.Concat(compression.Field.Split('_').Select(word => char.ToUpperInvariant(word[0]) + word[1..]));
            failures.Add($"Serving:KvCompression:{key}: {compression.Message}");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
