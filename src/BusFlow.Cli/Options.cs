using System.Globalization;

namespace BusFlow.Cli;

/// <summary>The command line after the verb.</summary>
internal sealed class Options
{
    public List<string> Positional { get; } = [];

    public Dictionary<string, string> Tags { get; } = new(StringComparer.Ordinal);

    public Uri Url { get; private set; } = new(Environment.GetEnvironmentVariable("BUSFLOW_URL") ?? "http://localhost:5080");

    public string? ApiKey { get; private set; } = Environment.GetEnvironmentVariable("BUSFLOW_API_KEY");

    public string? Input { get; private set; }

    public long After { get; private set; }

    public string? Error { get; private set; }

    public static Options Parse(IEnumerable<string> args)
    {
        var options = new Options();
        using var e = args.GetEnumerator();
        while (e.MoveNext())
        {
            var arg = e.Current;
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                options.Positional.Add(arg);
                continue;
            }

            if (!e.MoveNext())
            {
                options.Error = $"{arg} needs a value";
                return options;
            }

            var value = e.Current;
            switch (arg)
            {
                case "--url" when Uri.TryCreate(value, UriKind.Absolute, out var url):
                    options.Url = url;
                    break;
                case "--api-key":
                    options.ApiKey = value;
                    break;
                case "--input":
                    options.Input = value;
                    break;
                case "--after" when long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var after):
                    options.After = after;
                    break;
                case "--tag" when value.Split('=', 2) is [var key, var tag]:
                    options.Tags[key] = tag;
                    break;
                default:
                    options.Error = $"bad option {arg} {value}";
                    return options;
            }
        }

        if (options.Positional.Count == 0)
        {
            options.Error = "missing argument";
        }

        return options;
    }
}
