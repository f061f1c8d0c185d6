using System.Threading.Channels;
using BusFlow.Contracts;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Live;

/// <summary>
/// Turns the bus's event deliveries (at least once, in any order across pipelines) into one gapless
/// stream in position order, and hands it to the hub. Positions are given without gaps, so a
/// missing one is either still in flight on the bus or only in the store: after
/// <see cref="EdgeOptions.GapTimeout"/> the gap is read from the store. A gap at the tail has no
/// later event to show it (the bus lost the last events, say the edge's temporary queue went with a
/// broker node, and nothing has happened since): after <see cref="EdgeOptions.TailCheck"/> without an
/// event the feed asks the store where it stands and reads what it missed. Repeats are dropped, which
/// is what lets a store committing in this process hand its events over at once
/// (<see cref="ICommittedEventsListener"/>) while their bus copies still come.
/// </summary>
internal sealed partial class LiveFeed(
    SubscriptionHub hub,
    IPipelineEventLog reader,
    EdgeMetrics metrics,
    IOptions<EdgeOptions> options,
    ILogger<LiveFeed> logger) : BackgroundService, ICommittedEventsListener
{
    private readonly Channel<PipelineEvent> _incoming = Channel.CreateBounded<PipelineEvent>(new BoundedChannelOptions(10_000) { SingleReader = true });
    private readonly SortedDictionary<long, PipelineEvent> _pending = [];
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TimeSpan _gapTimeout = options.Value.GapTimeout;
    private readonly TimeSpan _tailCheck = options.Value.TailCheck;
    private int _tailFailures;
    private long _tailRetryAt;
    private long _head;

    /// <summary>The last position handed to the hub.</summary>
    public long Head => Interlocked.Read(ref _head);

    /// <summary>Completes once the feed knows where the store stands.</summary>
    public Task Ready => _ready.Task;

    /// <summary>Takes an event from the bus; waits when the feed is 10,000 events behind (back-pressure onto the broker).</summary>
    public ValueTask PostAsync(PipelineEvent e, CancellationToken cancellationToken)
    {
        metrics.EventReceived();
        return _incoming.Writer.WriteAsync(e, cancellationToken);
    }

    /// <summary>
    /// Takes events a store in this process just committed. Never waits: what does not fit now is
    /// left to the bus's copy, or to the store when that is lost.
    /// </summary>
    public void OnCommitted(IReadOnlyList<PipelineEvent> events)
    {
        var taken = 0;
        foreach (var e in events)
        {
            if (!_incoming.Writer.TryWrite(e))
            {
                break;
            }

            taken++;
        }

        metrics.EventsTakenInProcess(taken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        Interlocked.Exchange(ref _head, await StartingPositionAsync(stoppingToken));
        _ready.TrySetResult();
        // When the feed started waiting for the position after _head (0: not waiting).
        var gapSince = 0L;
        var gapAt = 0L;
        while (!stoppingToken.IsCancellationRequested)
        {
            var waitFor = _tailCheck;
            if (_pending.Count > 0)
            {
                var left = _gapTimeout.TotalMilliseconds - (Environment.TickCount64 - gapSince);
                waitFor = TimeSpan.FromMilliseconds(Math.Max(0, left));
            }

            if (await WaitForEventAsync(waitFor, stoppingToken))
            {
                while (_incoming.Reader.TryRead(out var e))
                {
                    Accept(e);
                }
            }
            else if (_pending.Count == 0)
            {
                await CheckTailAsync(stoppingToken);
            }

            Drain();
            if (_pending.Count == 0)
            {
                gapSince = 0;
                continue;
            }

            if (gapSince == 0 || gapAt != _head)
            {
                gapSince = Environment.TickCount64;
                gapAt = _head;
            }
            else if (Environment.TickCount64 - gapSince >= _gapTimeout.TotalMilliseconds)
            {
                await FillGapAsync(stoppingToken);
                gapSince = 0;
            }
        }
    }

    private async Task<bool> WaitForEventAsync(TimeSpan timeout, CancellationToken stoppingToken)
    {
        if (_incoming.Reader.TryPeek(out _))
        {
            return true;
        }

        if (timeout == TimeSpan.Zero)
        {
            return false;
        }

        // The wait is cancelled, not abandoned, at its timeout: an abandoned one stays registered
        // with the channel until the next write, and an idle feed times out every TailCheck.
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        wait.CancelAfter(timeout);
        try
        {
            return await _incoming.Reader.WaitToReadAsync(wait.Token);
        }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
        {
            return false;
        }
    }

    private void Accept(PipelineEvent e)
    {
        if (e.Position == 0)
        {
            // Recorded without the store (a saga on the in-memory repository): no position to order by.
            hub.Dispatch(new EdgeEvent(e));
            return;
        }

        if (e.Position > _head)
        {
            _pending.TryAdd(e.Position, e);
        }
    }

    private void Drain()
    {
        while (_pending.Remove(_head + 1, out var next))
        {
            Interlocked.Increment(ref _head);
            hub.Dispatch(new EdgeEvent(next));
        }
    }

    /// <summary>Nothing came for a while: reads from the store what it holds past the head, if anything.</summary>
    /// <remarks>
    /// Bounded by <see cref="EdgeOptions.TailCheck"/> (at least a second), so that a database that
    /// does not answer holds up the live events behind it no longer than that; after a failure the
    /// next check waits longer, up to a minute.
    /// </remarks>
    private async Task CheckTailAsync(CancellationToken stoppingToken)
    {
        if (Environment.TickCount64 < _tailRetryAt)
        {
            return;
        }

        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        bounded.CancelAfter(_tailCheck < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : _tailCheck);
        try
        {
            var last = await reader.LastPositionAsync(bounded.Token);
            if (last > _head)
            {
                LogTailBehind(logger, last - _head, _head);
                await FillGapAsync(last, bounded.Token);
            }

            _tailFailures = 0;
        }
        catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
        {
            _tailFailures++;
            _tailRetryAt = Environment.TickCount64 + (long)Math.Min(60_000, 1000 * Math.Pow(2, Math.Min(_tailFailures, 6)));
            LogTailCheckFailed(logger, ex.Message, _head, _tailFailures);
        }
    }

    private Task FillGapAsync(CancellationToken stoppingToken) => FillGapAsync(_pending.Keys.First(), stoppingToken);

    private async Task FillGapAsync(long until, CancellationToken stoppingToken)
    {
        try
        {
            while (_head < until)
            {
                var page = await reader.ReadAllPageAsync(_head, 1000, stoppingToken);
                if (page.RowsRead == 0)
                {
                    return;
                }

                foreach (var e in page.Events)
                {
                    _pending.Remove(e.Position);
                    hub.Dispatch(new EdgeEvent(e));
                }

                Interlocked.Exchange(ref _head, page.Last);
                foreach (var stale in _pending.Keys.TakeWhile(p => p <= page.Last).ToList())
                {
                    _pending.Remove(stale);
                }
            }

            Drain();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogGapFillFailed(logger, ex, _head);
        }
    }

    private async Task<long> StartingPositionAsync(CancellationToken stoppingToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await reader.LastPositionAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogStoreAway(logger, ex, attempt);
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(attempt, 5)), stoppingToken);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reading a gap after position {Position} from the store failed; retrying")]
    private static partial void LogGapFillFailed(ILogger logger, Exception exception, long position);

    [LoggerMessage(Level = LogLevel.Debug, Message = "The live feed could not ask the store past position {Position} ({Failures} in a row): {Reason}; asking again later")]
    private static partial void LogTailCheckFailed(ILogger logger, string reason, long position, int failures);

    [LoggerMessage(Level = LogLevel.Information, Message = "The store holds {Count} events past the live feed's position {Position} that the bus did not bring; reading them")]
    private static partial void LogTailBehind(ILogger logger, long count, long position);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The live feed cannot read the store yet (attempt {Attempt}); retrying")]
    private static partial void LogStoreAway(ILogger logger, Exception exception, int attempt);
}
