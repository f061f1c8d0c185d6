using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Wakes pipelines at their deadlines (retry back-off, step timeouts, suspension expiry) by sending
/// <see cref="WakePipeline"/> to the saga. It needs no broker plugin: deadlines live in the saga
/// state, and a spurious or repeated wake-up changes nothing, so this clock only has to be punctual.
/// </summary>
internal sealed partial class PipelineClock(IServiceProvider services, TimeProvider time, ILogger<PipelineClock> logger) : BackgroundService
{
    private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(10);
    private readonly PriorityQueue<(Guid PipelineId, DateTimeOffset Due), DateTimeOffset> _queue = new();
    private readonly HashSet<(Guid, DateTimeOffset)> _scheduled = [];
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _changed = new(0);

    public void Schedule(Guid pipelineId, DateTimeOffset due)
    {
        lock (_lock)
        {
            if (!_scheduled.Add((pipelineId, due)))
            {
                return;
            }

            _queue.Enqueue((pipelineId, due), due);
        }

        _changed.Release();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var bus = services.GetRequiredService<IBus>();
        var saga = new Uri("queue:" + QueueNames.Saga);
        var addresses = services.GetRequiredService<SendAddresses>();
        while (!stoppingToken.IsCancellationRequested)
        {
            var due = new List<Guid>();
            TimeSpan wait;
            lock (_lock)
            {
                var now = time.GetUtcNow();
                while (_queue.TryPeek(out var next, out _) && next.Due <= now)
                {
                    _queue.Dequeue();
                    _scheduled.Remove(next);
                    due.Add(next.PipelineId);
                }

                wait = _queue.TryPeek(out var first, out _) ? first.Due - now : Timeout.InfiniteTimeSpan;
            }

            var pending = due.Distinct().ToList();
            for (var i = 0; i < pending.Count; i++)
            {
                try
                {
                    // Bounded: RabbitMQ.Client 7 can leave a send waiting forever after a broker
                    // restart, which would stop every later wake-up; a wake-up is safe to repeat.
                    var endpoint = await addresses.GetSendEndpointAsync(bus, saga, stoppingToken).WaitAsync(SendTimeout, time, stoppingToken);
                    await endpoint.Send(new WakePipeline(pending[i]), stoppingToken).WaitAsync(SendTimeout, time, stoppingToken);
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // The bus is down: this and the rest of the pass try again shortly (not one
                    // timeout after another); the deadlines stay in the saga state.
                    LogWakeFailed(logger, ex, pending[i], pending.Count - i - 1);
                    var retryAt = time.GetUtcNow().AddSeconds(1);
                    foreach (var id in pending.Skip(i))
                    {
                        Schedule(id, retryAt);
                    }

                    break;
                }
            }

            try
            {
                await _changed.WaitAsync(wait > TimeSpan.Zero || wait == Timeout.InfiniteTimeSpan ? wait : TimeSpan.Zero, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public override void Dispose()
    {
        _changed.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not wake pipeline {PipelineId}; retrying it and {Others} other due pipelines in 1 s")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception, Guid pipelineId, int others);
}
