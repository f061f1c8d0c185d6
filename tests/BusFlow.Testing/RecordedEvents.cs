using System.Collections.Concurrent;
using BusFlow.Contracts;
using MassTransit;

namespace BusFlow.Testing;

/// <summary>Every pipeline event a bus subscriber received, per pipeline, in arrival order.</summary>
public sealed class RecordedEvents
{
    private readonly ConcurrentDictionary<Guid, List<PipelineEvent>> _events = new();
    private readonly ConcurrentDictionary<Guid, TaskCompletionSource<PipelineEvent>> _ends = new();

    public void Add(PipelineEvent e)
    {
        var list = _events.GetOrAdd(e.PipelineId, _ => []);
        lock (list)
        {
            list.Add(e);
        }

        if (e is PipelineCompleted or PipelineFailed or PipelineCancelled)
        {
            End(e.PipelineId).TrySetResult(e);
        }
    }

    public IReadOnlyList<PipelineEvent> For(Guid pipelineId)
    {
        if (!_events.TryGetValue(pipelineId, out var list))
        {
            return [];
        }

        lock (list)
        {
            return [.. list];
        }
    }

    public IReadOnlyList<PipelineEvent> All() => _events.Keys.SelectMany(For).ToList();

    /// <summary>
    /// Waits for the pipeline's end event and then for every event before it: a bus subscriber
    /// consumes messages concurrently, so the end (the last seq) may be recorded a moment before an
    /// earlier event of the same transition. An event that never comes fails with its seq named.
    /// </summary>
    public async Task<PipelineEvent> WaitForEnd(Guid pipelineId, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        PipelineEvent end;
        try
        {
            end = await End(pipelineId).Task.WaitAsync(until - DateTime.UtcNow);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"Pipeline {pipelineId} did not end; its events: {Describe(pipelineId)}");
        }

        while (For(pipelineId).Select(e => e.Seq).Where(seq => seq <= end.Seq).Distinct().Count() < end.Seq)
        {
            if (DateTime.UtcNow >= until)
            {
                var seen = For(pipelineId).Select(e => e.Seq).ToHashSet();
                var missing = Enumerable.Range(1, (int)end.Seq).Where(s => !seen.Contains(s));
                throw new TimeoutException($"Pipeline {pipelineId} ended at seq {end.Seq} but seq {string.Join(", ", missing)} never arrived; its events: {Describe(pipelineId)}");
            }

            await Task.Delay(10);
        }

        return end;
    }

    public async Task<T> WaitFor<T>(Guid pipelineId, Func<T, bool>? match = null, TimeSpan? timeout = null)
        where T : PipelineEvent
    {
        var until = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (DateTime.UtcNow < until)
        {
            if (For(pipelineId).OfType<T>().FirstOrDefault(e => match?.Invoke(e) ?? true) is { } found)
            {
                return found;
            }

            await Task.Delay(10);
        }

        throw new TimeoutException($"No {typeof(T).Name} for pipeline {pipelineId}; its events: {Describe(pipelineId)}");
    }

    private string Describe(Guid pipelineId) => string.Join(", ", For(pipelineId).Select(e => $"{e.Seq}:{e.EventType}"));

    private TaskCompletionSource<PipelineEvent> End(Guid pipelineId) =>
        _ends.GetOrAdd(pipelineId, _ => new TaskCompletionSource<PipelineEvent>(TaskCreationOptions.RunContinuationsAsynchronously));
}

/// <summary>A bus subscriber to every pipeline event type, recording into <see cref="RecordedEvents"/>.</summary>
public sealed class RecordingConsumer(RecordedEvents recorded) : PipelineEventsConsumer
{
    protected override Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context)
    {
        recorded.Add(pipelineEvent);
        return Task.CompletedTask;
    }
}

/// <summary>Assertions every pipeline's event log must pass.</summary>
public static class EventAssertions
{
    public static void AssertGaplessSeq(IReadOnlyList<PipelineEvent> events)
    {
        var seqs = events.Select(e => e.Seq).OrderBy(s => s).ToList();
        Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs);
    }

    public static IReadOnlyList<string> Types(IReadOnlyList<PipelineEvent> events, string? step = null) =>
        events.OrderBy(e => e.Seq)
            .Where(e => step is null || (e is StepEvent s && s.StepName == step))
            .Select(e => e.EventType)
            .ToList();
}
