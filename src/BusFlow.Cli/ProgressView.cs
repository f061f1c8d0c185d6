using System.Globalization;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Cli;

/// <summary>
/// Plain lines for output that is not a terminal (a file, a pipe, <c>--plain</c>): each event as it
/// comes, and a step's bar as a line whenever the bar changes.
/// </summary>
internal sealed class ProgressView(TextWriter output, IReadOnlyList<string> steps)
{
    private const int BarWidth = 24;
    private readonly Steps _steps = new(steps);

    public void Show(PipelineEvent e)
    {
        var changed = _steps.Apply(e);
        output.WriteLine(Describe(e));
        if (changed is not null)
        {
            output.WriteLine(Bar(changed, _steps.Lines[changed]));
        }

        output.Flush();
    }

    private string Bar(string name, StepLine line)
    {
        var filled = (int)Math.Round(line.Percent / 100 * BarWidth);
        var width = Math.Max(8, _steps.Lines.Keys.Max(k => k.Length));
        var attempt = line.Attempt > 1 ? $" (attempt {line.Attempt})" : "";
        return string.Create(CultureInfo.InvariantCulture, $"  {name.PadRight(width)} [{new string('#', filled)}{new string('-', BarWidth - filled)}] {line.Percent,3:0}% {line.State}{attempt}");
    }

    public static string Describe(PipelineEvent e)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"[{e.Seq,3}] {e.EventType,-17}");
        switch (e)
        {
            case StepEvent step:
                text.Append(CultureInfo.InvariantCulture, $" {step.StepName}{(step.ItemIndex is { } i ? $"[{i}]" : "")} attempt {step.Attempt}");
                break;
        }

        switch (e)
        {
            case StepProgress p:
                text.Append(CultureInfo.InvariantCulture, $" {p.Percent:0}% {p.Message}");
                break;
            case StepCompleted c:
                text.Append(CultureInfo.InvariantCulture, $" in {c.DurationMs:0} ms");
                break;
            case StepFailed f:
                text.Append(CultureInfo.InvariantCulture, $" {f.Error.Kind}: {f.Error.Message}{(f.WillRetry ? " (will retry)" : "")}");
                break;
            case StepSuspended s:
                text.Append(CultureInfo.InvariantCulture, $" waiting: {s.Reason} (answer with: busflow answer {e.PipelineId} {s.SuspendId} '<json>')");
                break;
            case PipelineCompleted done:
                text.Append(" outputs ").Append(JsonSerializer.Serialize(done.Outputs));
                break;
            case PipelineFailed failed:
                text.Append(CultureInfo.InvariantCulture, $" {failed.FailedStep}: {failed.Error.Kind}: {failed.Error.Message}");
                break;
            case PipelineCancelled cancelled:
                text.Append(' ').Append(cancelled.Reason);
                break;
        }

        return text.ToString();
    }

    /// <summary>Each step's state, percent and attempt, from its events.</summary>
    internal sealed class Steps(IReadOnlyList<string> names)
    {
        public Dictionary<string, StepLine> Lines { get; } = names.ToDictionary(s => s, _ => new StepLine(), StringComparer.Ordinal);

        /// <summary>Applies an event; the step's name when its line changed.</summary>
        public string? Apply(PipelineEvent pipelineEvent)
        {
            if (pipelineEvent is not StepEvent e)
            {
                return null;
            }

            if (!Lines.TryGetValue(e.StepName, out var line))
            {
                line = Lines[e.StepName] = new StepLine();
            }

            var before = (line.State, line.Percent, line.Attempt);
            line.Attempt = Math.Max(line.Attempt, e.Attempt);
            switch (e)
            {
                case StepStarted:
                    line.State = "running";
                    break;
                case StepProgress { Percent: { } percent }:
                    line.Percent = Math.Clamp(percent, 0, 100);
                    break;
                case StepCompleted when e.ItemIndex is null:
                    line.State = "completed";
                    line.Percent = 100;
                    break;
                case StepFailed { WillRetry: true }:
                    line.State = "retrying";
                    line.Percent = 0;
                    break;
                case StepFailed:
                    line.State = "failed";
                    break;
                case StepSuspended:
                    line.State = "waiting for an answer";
                    break;
            }

            return before == (line.State, line.Percent, line.Attempt) ? null : e.StepName;
        }
    }

    internal sealed class StepLine
    {
        public string State { get; set; } = "pending";

        public double Percent { get; set; }

        public int Attempt { get; set; }
    }
}
