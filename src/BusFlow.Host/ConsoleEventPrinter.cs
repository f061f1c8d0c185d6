using System.Collections.Concurrent;
using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Host;

/// <summary>Prints every pipeline event as one JSON line, as clients receive it.</summary>
internal sealed class ConsoleEventPrinter : IPipelineObserver
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly ConcurrentDictionary<Guid, TaskCompletionSource<PipelineEvent>> _waiting = new();

    public Task<PipelineEvent> WaitForEnd(Guid pipelineId) =>
        _waiting.GetOrAdd(pipelineId, _ => new TaskCompletionSource<PipelineEvent>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public ValueTask OnEventAsync(PipelineEvent pipelineEvent, CancellationToken cancellationToken)
    {
        Console.WriteLine(JsonSerializer.Serialize(pipelineEvent, Json));
        if (pipelineEvent is PipelineCompleted or PipelineFailed or PipelineCancelled && _waiting.TryGetValue(pipelineEvent.PipelineId, out var waiter))
        {
            waiter.TrySetResult(pipelineEvent);
        }

        return ValueTask.CompletedTask;
    }
}
