using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using BusFlow.Client;
using BusFlow.Contracts;
using Spectre.Console;

namespace BusFlow.Cli;

/// <summary>
/// Shows a pipeline in the terminal: on a terminal a live table of its steps (Spectre.Console)
/// with its latest events under it; otherwise (a file, a pipe, <c>--plain</c>) plain lines
/// (<see cref="ProgressView"/>).
/// </summary>
internal sealed class PipelineView(BusFlowClient client, Uri url, string? apiKey, bool interactive)
{
    /// <summary>Watches the pipeline to its end, resuming after drops; exit code 0 when it completed, 1 otherwise.</summary>
    public async Task<int> WatchAsync(Guid id, long after, CancellationToken cancellationToken)
    {
        var status = await client.GetStatusAsync(id, cancellationToken);
        if (status.IsFinished && status.LastSeq <= after)
        {
            // Nothing after --after will come: its end is already behind.
            Console.WriteLine($"pipeline {status.Status.ToLowerInvariant()}");
            return status.Status == "Completed" ? CliCommands.Done : CliCommands.PipelineDidNotComplete;
        }

        var steps = await StepNamesAsync(status.Definition, cancellationToken);
        PipelineEvent? last = null;
        if (interactive)
        {
            var board = new StepBoard(steps);
            await AnsiConsole.Live(board.Render()).AutoClear(false).Overflow(VerticalOverflow.Ellipsis).StartAsync(async live =>
            {
                await foreach (var e in client.WatchAsync(id, after, cancellationToken: cancellationToken))
                {
                    board.Apply(e);
                    live.UpdateTarget(board.Render());
                    last = e;
                }
            });
        }
        else
        {
            var view = new ProgressView(Console.Out, steps);
            await foreach (var e in client.WatchAsync(id, after, cancellationToken: cancellationToken))
            {
                view.Show(e);
                last = e;
            }
        }

        switch (last)
        {
            case PipelineCompleted:
                Console.WriteLine("pipeline completed");
                return CliCommands.Done;
            case PipelineFailed failed:
                Console.WriteLine($"pipeline failed at {failed.FailedStep}: {failed.Error.Message}");
                return CliCommands.PipelineDidNotComplete;
            case PipelineCancelled:
                Console.WriteLine("pipeline cancelled");
                return CliCommands.PipelineDidNotComplete;
            default:
                // The watch ends only at a final event; said plainly should that ever change.
                Console.WriteLine("the watch ended without the pipeline's final event");
                return CliCommands.PipelineDidNotComplete;
        }
    }

    /// <summary>The pipeline's status and a table of its steps; exit code 0.</summary>
    public async Task<int> StatusAsync(Guid id, CancellationToken cancellationToken)
    {
        var status = await client.GetStatusAsync(id, cancellationToken);
        var rows = status.Raw.TryGetProperty("steps", out var steps) ? steps.EnumerateArray().ToList() : [];
        string Field(JsonElement step, string name) => step.TryGetProperty(name, out var value) && value.ValueKind is not JsonValueKind.Null ? value.ToString() : "";
        if (!interactive)
        {
            Console.WriteLine($"{status.Definition} {status.DefinitionVersion} {status.PipelineId} {status.Status} (last seq {status.LastSeq})");
            foreach (var step in rows)
            {
                Console.WriteLine($"  {Field(step, "name"),-16} {Field(step, "status"),-10} attempts {Field(step, "attempts")}");
            }

            return CliCommands.Done;
        }

        var table = new Table().Title($"{Markup.Escape(status.Definition)} [grey]{Markup.Escape(status.DefinitionVersion)}[/] {status.PipelineId}: [bold]{Markup.Escape(status.Status)}[/]")
            .AddColumns("step", "status", "attempts", "started", "finished");
        foreach (var step in rows)
        {
            table.AddRow(Markup.Escape(Field(step, "name")), StepBoard.Colour(Field(step, "status").ToLowerInvariant()), Field(step, "attempts"), Markup.Escape(Time(Field(step, "startedAt"))), Markup.Escape(Time(Field(step, "finishedAt"))));
        }

        AnsiConsole.Write(table);
        return CliCommands.Done;
    }

    private static string Time(string text) => DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var at) ? at.ToLocalTime().ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture) : "";

    private async Task<IReadOnlyList<string>> StepNamesAsync(string definition, CancellationToken cancellationToken)
    {
        var definitions = await DefinitionsAsync(url, apiKey, Timeout.InfiniteTimeSpan, cancellationToken);
        return [.. definitions.EnumerateArray()
            .Where(d => d.GetProperty("name").GetString() == definition)
            .SelectMany(d => d.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("name").GetString()!))];
    }

    /// <summary><c>GET /api/definitions</c> of the edge (BusFlowClient has no call for it yet), for step names and completion.</summary>
    public static async Task<JsonElement> DefinitionsAsync(Uri url, string? apiKey, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = url, Timeout = timeout };
        if (apiKey is { } key)
        {
            http.DefaultRequestHeaders.Add("X-Api-Key", key);
        }

        return await http.GetFromJsonAsync<JsonElement>("api/definitions", cancellationToken);
    }
}

/// <summary>The live table: a bar, the state and the attempt of each step, and the latest events under it.</summary>
internal sealed class StepBoard(IReadOnlyList<string> steps)
{
    private const int BarWidth = 24;
    private readonly ProgressView.Steps _steps = new(steps);
    private readonly Queue<string> _recent = new();

    public void Apply(PipelineEvent e)
    {
        _steps.Apply(e);
        _recent.Enqueue(ProgressView.Describe(e));
        if (_recent.Count > 8)
        {
            _recent.Dequeue();
        }
    }

    public Rows Render()
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumns("step", "progress", "state", "attempt");
        foreach (var (name, line) in _steps.Lines)
        {
            var filled = (int)Math.Round(line.Percent / 100 * BarWidth);
            var bar = $"[{BarColour(line.State)}]{new string('━', filled)}[/][grey]{new string('─', BarWidth - filled)}[/] {line.Percent,3:0}%";
            table.AddRow(Markup.Escape(name), bar, Colour(line.State), line.Attempt > 1 ? line.Attempt.ToString(CultureInfo.InvariantCulture) : "");
        }

        return new Rows(table, new Text(string.Join('\n', _recent), new Style(Color.Grey)));
    }

    public static string Colour(string state) => $"[{BarColour(state)}]{Markup.Escape(state)}[/]";

    private static string BarColour(string state) => state switch
    {
        "completed" => "green",
        "failed" => "red",
        "retrying" => "darkorange",
        "waiting for an answer" or "suspended" => "yellow",
        "running" => "blue",
        _ => "grey",
    };
}
