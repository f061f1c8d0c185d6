using System.Diagnostics;
using System.Diagnostics.Metrics;
using BusFlow.Contracts;

namespace BusFlow.Internal;

/// <summary>
/// The <c>BusFlow</c> meter: pipelines started and finished by outcome, and step attempts with their
/// duration, counted in the saga's process from the events of each committed transition (so an
/// event rolled back or decided twice is never counted). Tags: <c>busflow.definition</c>,
/// <c>busflow.step</c>, <c>busflow.outcome</c>; never a pipeline id (one series per pipeline would
/// swamp any metrics store).
/// </summary>
internal sealed class PipelineMetrics
{
    private readonly Counter<long> _started;
    private readonly Counter<long> _finished;
    private readonly Histogram<double> _stepDuration;

    public PipelineMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(BusFlowTelemetry.Name);
        _started = meter.CreateCounter<long>("busflow.pipelines.started", "{pipeline}", "Pipelines started");
        _finished = meter.CreateCounter<long>("busflow.pipelines.finished", "{pipeline}", "Pipelines that reached their end, by outcome: completed, failed, cancelled");
        _stepDuration = meter.CreateHistogram<double>(
            "busflow.step.duration",
            "s",
            "Step attempts by outcome (completed; failed: the step failed for good; retrying: another attempt follows), with how long each ran in its worker",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] });
    }

    public void Record(PipelineEvent e)
    {
        var definition = new KeyValuePair<string, object?>("busflow.definition", e.Definition);
        switch (e)
        {
            case PipelineStarted:
                _started.Add(1, definition);
                break;
            case PipelineCompleted:
                _finished.Add(1, definition, new("busflow.outcome", "completed"));
                break;
            case PipelineFailed:
                _finished.Add(1, definition, new("busflow.outcome", "failed"));
                break;
            case PipelineCancelled:
                _finished.Add(1, definition, new("busflow.outcome", "cancelled"));
                break;
            case StepCompleted { ItemIndex: null } step:
                RecordStep(step, step.DurationMs, "completed");
                break;
            case StepFailed { ItemIndex: null } step:
                RecordStep(step, step.DurationMs, step.WillRetry ? "retrying" : "failed");
                break;
        }
    }

    private void RecordStep(StepEvent step, double durationMs, string outcome)
    {
        var tags = new TagList
        {
            { "busflow.definition", step.Definition },
            { "busflow.step", step.StepName },
            { "busflow.outcome", outcome },
        };
        _stepDuration.Record(durationMs / 1000, tags);
    }
}
