using System.Globalization;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Cli;

/// <summary>
/// Draws a pipeline in the terminal: the events as they come, and below them one progress bar per
/// step, redrawn in place on a terminal. When the output is a file or a pipe, bars are printed as
/// lines whenever a step's bar changes.
/// </summary>
internal sealed class ProgressView(TextWriter output, IReadOnlyList<string> steps, bool interactive)
{
    private const int BarWidth = 24;
    private readonly Dictionary<string, StepLine> _steps = steps.ToDictionary(s => s, _ => new StepLine(), StringComparer.Ordinal);
    private int _barsDrawn;

    public void Show(PipelineEvent e)
    {
        var changed = e is StepEvent step ? Apply(step) : null;
        if (interactive)
        {
            ClearBars();
            output.WriteLine(Describe(e));
            DrawBars();
        }
        else
        {
            output.WriteLine(Describe(e));
            if (changed is not null)
            {
                output.WriteLine(Bar(changed, _steps[changed]));
            }
        }

        output.Flush();
    }

    private string? Apply(StepEvent e)
    {
        if (!_steps.TryGetValue(e.StepName, out var line))
        {
            line = _steps[e.StepName] = new StepLine();
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

    private void ClearBars()
    {
        if (_barsDrawn > 0)
        {
            output.Write($"\u001b[{_barsDrawn}A\u001b[J");
        }
    }

    private void DrawBars()
    {
        foreach (var (name, line) in _steps)
        {
            output.WriteLine(Bar(name, line));
        }

        _barsDrawn = _steps.Count;
    }

    private string Bar(string name, StepLine line)
    {
        var filled = (int)Math.Round(line.Percent / 100 * BarWidth);
        var width = Math.Max(8, _steps.Keys.Max(k => k.Length));
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

    private sealed class StepLine
    {
        public string State { get; set; } = "pending";

        public double Percent { get; set; }

        public int Attempt { get; set; }
    }
}
