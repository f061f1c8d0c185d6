using System.Net.Http.Json;
using System.Text.Json;
using BusFlow.Cli;
using BusFlow.Client;
using BusFlow.Contracts;

// busflow: start or attach to a pipeline and watch it in the terminal. Exit 0 when it completed,
// 1 when it failed or was cancelled, 2 for a usage or API error.
const string Usage = """
    usage:
      busflow start <definition> [--input '<json>'] [--tag key=value]... [options]   start a pipeline and watch it
      busflow watch <pipeline-id> [--after <seq>] [options]                          attach to a pipeline and watch it
      busflow answer <pipeline-id> <suspend-id> '<json>' [options]                   answer a suspended step
      busflow cancel <pipeline-id> [options]                                         cancel a running pipeline
    options:
      --url <edge>        default http://localhost:5080 (or BUSFLOW_URL)
      --api-key <key>     or BUSFLOW_API_KEY
    """;

if (args.Length < 2 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine(Usage);
    return 2;
}

var options = Options.Parse(args.Skip(1));
if (options.Error is { } usageError)
{
    Console.Error.WriteLine($"busflow: {usageError}\n{Usage}");
    return 2;
}

using var client = new BusFlowClient(new BusFlowClientOptions
{
    BaseAddress = options.Url,
    ApiKey = options.ApiKey,
    MaxReconnectDelay = TimeSpan.FromSeconds(2),
});
using var interrupted = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    interrupted.Cancel();
};

try
{
    switch (args[0])
    {
        case "start":
            var input = options.Input is null ? (JsonElement?)null : JsonDocument.Parse(options.Input).RootElement;
            var started = await client.StartAsync(options.Positional[0], input, options.Tags, cancellationToken: interrupted.Token);
            Console.WriteLine($"started {options.Positional[0]} pipeline {started}");
            return await WatchAsync(started, 0);
        case "watch":
            return await WatchAsync(ParseId(options.Positional[0]), options.After);
        case "answer" when options.Positional.Count >= 3:
            await client.AnswerAsync(ParseId(options.Positional[0]), ParseId(options.Positional[1]), JsonDocument.Parse(options.Positional[2]).RootElement, cancellationToken: interrupted.Token);
            Console.WriteLine("answered");
            return 0;
        case "cancel":
            await client.CancelAsync(ParseId(options.Positional[0]), interrupted.Token);
            Console.WriteLine("cancel requested");
            return 0;
        default:
            Console.Error.WriteLine(Usage);
            return 2;
    }
}
catch (BusFlowApiException ex)
{
    Console.Error.WriteLine($"busflow: {ex.Message} ({ex.Code})");
    return 2;
}
catch (JsonException ex)
{
    Console.Error.WriteLine($"busflow: not JSON: {ex.Message}");
    return 2;
}
catch (FormatException ex)
{
    Console.Error.WriteLine($"busflow: {ex.Message}");
    return 2;
}
catch (HttpRequestException ex)
{
    Console.Error.WriteLine($"busflow: cannot reach {options.Url}: {ex.Message}");
    return 2;
}
catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
{
    return 130;
}

async Task<int> WatchAsync(Guid id, long after)
{
    var status = await client.GetStatusAsync(id, interrupted.Token);
    var steps = await StepNamesAsync(status.Definition);
    var view = new ProgressView(Console.Out, steps, interactive: !Console.IsOutputRedirected);
    PipelineEvent? last = null;
    await foreach (var e in client.WatchAsync(id, after, cancellationToken: interrupted.Token))
    {
        view.Show(e);
        last = e;
    }

    switch (last)
    {
        case PipelineCompleted:
            Console.WriteLine("pipeline completed");
            return 0;
        case PipelineFailed failed:
            Console.WriteLine($"pipeline failed at {failed.FailedStep}: {failed.Error.Message}");
            return 1;
        default:
            Console.WriteLine("pipeline cancelled");
            return 1;
    }
}

async Task<IReadOnlyList<string>> StepNamesAsync(string definition)
{
    using var http = new HttpClient { BaseAddress = options.Url };
    if (options.ApiKey is { } key)
    {
        http.DefaultRequestHeaders.Add("X-Api-Key", key);
    }

    var definitions = await http.GetFromJsonAsync<JsonElement>("api/definitions", interrupted.Token);
    return [.. definitions.EnumerateArray()
        .Where(d => d.GetProperty("name").GetString() == definition)
        .SelectMany(d => d.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("name").GetString()!))];
}

static Guid ParseId(string text) => Guid.TryParse(text, out var id) ? id : throw new FormatException($"'{text}' is not a pipeline or suspension id (a uuid)");
