using System.CommandLine;
using System.CommandLine.Completions;
using System.CommandLine.Parsing;
using System.Text.Json;
using BusFlow.Client;

namespace BusFlow.Cli;

/// <summary>The verbs, their arguments and options (System.CommandLine), and what each does.</summary>
internal static class CliCommands
{
    public const int Done = 0;
    public const int PipelineDidNotComplete = 1;
    public const int UsageError = 2;
    public const int Interrupted = 130;

    private static readonly Option<Uri> Url = new("--url")
    {
        Description = "The edge to talk to (or BUSFLOW_URL)",
        DefaultValueFactory = _ => new Uri(Environment.GetEnvironmentVariable("BUSFLOW_URL") ?? "http://localhost:5080"),
        CustomParser = result => Uri.TryCreate(result.Tokens.Single().Value, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
            ? url
            : Fail<Uri>(result, $"--url '{result.Tokens.Single().Value}' is not an http(s) address, e.g. http://localhost:5080"),
        Recursive = true,
    };

    private static readonly Option<string?> ApiKey = new("--api-key")
    {
        Description = "The API key, when the edge asks for one (or BUSFLOW_API_KEY)",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("BUSFLOW_API_KEY"),
        Recursive = true,
    };

    private static readonly Option<bool> Plain = new("--plain")
    {
        Description = "Plain lines instead of the live table, as when the output is not a terminal",
        Recursive = true,
    };

    public static RootCommand Build()
    {
        var definition = new Argument<string>("definition") { Description = "The pipeline definition to start (GET /api/definitions lists them)" };
        definition.CompletionSources.Add(DefinitionNames);
        var input = new Option<JsonElement?>("--input", "-i")
        {
            Description = "The pipeline's input as JSON, e.g. '{\"texts\":[\"a b\"]}'",
            CustomParser = result => ParseJson(result, result.Tokens.Single().Value, "--input"),
        };
        var tags = new Option<Dictionary<string, string>>("--tag", "-t")
        {
            Description = "A tag key=value (repeat for more)",
            AllowMultipleArgumentsPerToken = false,
            Arity = ArgumentArity.ZeroOrMore,
            CustomParser = ParseTags,
        };
        var start = new Command("start", "Start a pipeline and watch it to its end") { definition, input, tags };
        start.SetAction((parse, cancellation) => RunAsync(parse, async (client, view, ct) =>
        {
            var id = await client.StartAsync(parse.GetValue(definition)!, parse.GetValue(input), parse.GetValue(tags), cancellationToken: ct);
            Console.WriteLine($"started {parse.GetValue(definition)} pipeline {id}");
            return await view.WatchAsync(id, 0, ct);
        }, cancellation));

        var pipeline = new Argument<Guid>("pipeline-id") { Description = "The pipeline's id (printed by start; GET /api/pipelines lists them)", CustomParser = result => ParseId(result, "pipeline") };
        var after = new Option<long>("--after") { Description = "Show events after this seq (0: from the start)" };
        var watch = new Command("watch", "Attach to a pipeline and watch it to its end") { pipeline, after };
        watch.SetAction((parse, cancellation) => RunAsync(parse, (client, view, ct) => view.WatchAsync(parse.GetValue(pipeline), parse.GetValue(after), ct), cancellation));

        var suspension = new Argument<Guid>("suspend-id") { Description = "The suspension's id (shown with its StepSuspended event)", CustomParser = result => ParseId(result, "suspension") };
        var answerJson = new Argument<JsonElement>("answer") { Description = "The answer as JSON, e.g. '{\"approved\":true}'", CustomParser = result => ParseJson(result, result.Tokens.Single().Value, "the answer") ?? default };
        var answer = new Command("answer", "Answer a suspended step") { pipeline, suspension, answerJson };
        answer.SetAction((parse, cancellation) => RunAsync(parse, async (client, _, ct) =>
        {
            await client.AnswerAsync(parse.GetValue(pipeline), parse.GetValue(suspension), parse.GetValue(answerJson), cancellationToken: ct);
            Console.WriteLine("answered");
            return Done;
        }, cancellation));

        var cancel = new Command("cancel", "Cancel a running pipeline") { pipeline };
        cancel.SetAction((parse, cancellation) => RunAsync(parse, async (client, _, ct) =>
        {
            await client.CancelAsync(parse.GetValue(pipeline), ct);
            Console.WriteLine("cancel requested");
            return Done;
        }, cancellation));

        var status = new Command("status", "Show a pipeline's status and a table of its steps") { pipeline };
        status.SetAction((parse, cancellation) => RunAsync(parse, (client, view, ct) => view.StatusAsync(parse.GetValue(pipeline), ct), cancellation));

        return new RootCommand("busflow: start, watch, answer and cancel BusFlow pipelines from a terminal")
        {
            Url, ApiKey, Plain, start, watch, answer, cancel, status,
        };
    }

    /// <summary>Runs a verb with a client, turning the API's and the network's errors into a line that says what to do and exit code 2.</summary>
    private static async Task<int> RunAsync(ParseResult parse, Func<BusFlowClient, PipelineView, CancellationToken, Task<int>> run, CancellationToken cancellation)
    {
        var url = parse.GetValue(Url)!;
        using var client = new BusFlowClient(new BusFlowClientOptions { BaseAddress = url, ApiKey = parse.GetValue(ApiKey), MaxReconnectDelay = TimeSpan.FromSeconds(2) });
        var view = new PipelineView(client, url, parse.GetValue(ApiKey), interactive: !parse.GetValue(Plain) && !Console.IsOutputRedirected);
        try
        {
            return await run(client, view, cancellation);
        }
        catch (BusFlowApiException ex)
        {
            Console.Error.WriteLine($"busflow: {ex.Message} ({ex.Code}){Advice(ex.Code)}");
            return UsageError;
        }
        catch (HttpRequestException ex)
        {
            Console.Error.WriteLine($"busflow: cannot reach {url}: {ex.Message}. Is the host running there? Point --url (or BUSFLOW_URL) at an edge.");
            return UsageError;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            return Interrupted;
        }
    }

    private static string Advice(string? code) => code switch
    {
        "unauthorized" => " Give the edge's key with --api-key or BUSFLOW_API_KEY.",
        "unknown_definition" => " 'busflow start <TAB>' (with completion on) or GET /api/definitions lists the definitions.",
        "pipeline_not_found" => " Check the id; GET /api/pipelines lists recent pipelines.",
        _ => "",
    };

    /// <summary>Completes a definition's name from the edge's list (nothing when the edge cannot be reached within a second).</summary>
    private static IEnumerable<CompletionItem> DefinitionNames(CompletionContext context)
    {
        try
        {
            var definitions = PipelineView.DefinitionsAsync(context.ParseResult.GetValue(Url)!, context.ParseResult.GetValue(ApiKey), TimeSpan.FromSeconds(1), CancellationToken.None).GetAwaiter().GetResult();
            return [.. definitions.EnumerateArray()
                .Select(d => d.GetProperty("name").GetString()!)
                .Where(name => name.StartsWith(context.WordToComplete, StringComparison.Ordinal))
                .Select(name => new CompletionItem(name))];
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or InvalidOperationException)
        {
            return [];
        }
    }

    private static Guid ParseId(ArgumentResult result, string what)
    {
        var text = result.Tokens.Single().Value;
        return Guid.TryParse(text, out var id) ? id : Fail<Guid>(result, $"'{text}' is not a {what} id: use the uuid printed by 'busflow start' or shown by 'busflow watch'");
    }

    private static JsonElement? ParseJson(ArgumentResult result, string text, string what)
    {
        try
        {
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException ex)
        {
            return Fail<JsonElement?>(result, $"{what} is not JSON ({ex.Message.Split(" Path:", 2)[0]}); quote it for your shell, e.g. --input '{{\"delayMs\":100}}'");
        }
    }

    private static Dictionary<string, string> ParseTags(ArgumentResult result)
    {
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var token in result.Tokens)
        {
            if (token.Value.Split('=', 2) is [{ Length: > 0 } key, var value])
            {
                tags[key] = value;
            }
            else
            {
                return Fail<Dictionary<string, string>>(result, $"--tag '{token.Value}' is not key=value, e.g. --tag team=data");
            }
        }

        return tags;
    }

    private static T Fail<T>(ArgumentResult result, string message)
    {
        result.AddError(message);
        return default!;
    }
}
