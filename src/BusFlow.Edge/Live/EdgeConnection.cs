using System.Buffers;
using System.Threading.Channels;
using BusFlow.Edge.Auth;

namespace BusFlow.Edge.Live;

/// <summary>
/// An item in a connection's outbound buffer: an event, a control message's JSON, or a run of
/// replayed events of a subscription that takes batches. An event of such a subscription may go
/// out in one write with the batched events next to it.
/// </summary>
internal readonly record struct Outbound(EdgeEvent? Event, byte[]? Control, bool Batch = false, EventRun? Run = null);

/// <summary>
/// One subscriber connection (a WebSocket or an event stream) with its bounded outbound buffer. Live
/// events are offered without waiting; a full buffer turns the subscription to the store instead of
/// delaying the broadcast. One writer drains the buffer onto the wire.
/// </summary>
internal abstract class EdgeConnection
{
    private readonly Channel<Outbound> _outbound;
    private readonly int _capacity;
    private long _lastProgress = Environment.TickCount64;

    // Replay runs in the buffer or being written: a run stands for up to MaxBatchEvents events, so
    // the buffer's item count alone would let a catch-up hold thousands of them.
    // One item per run held; writing waits while the connection holds its most. Made on the first
    // run: a connection that never catches up in runs (most of them, idle) does not carry it.
    private Channel<byte>? _replayRuns;

    private Channel<byte> ReplayRuns => LazyInitializer.EnsureInitialized(ref _replayRuns, () => Channel.CreateBounded<byte>(MaxReplayRuns));
    private TaskCompletionSource? _room;
    private int _closeRequested;

    protected EdgeConnection(BusFlowPrincipal principal, int capacity, EdgeMetrics metrics)
    {
        Principal = principal;
        Metrics = metrics;
        _capacity = capacity;
        _outbound = Channel.CreateBounded<Outbound>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public BusFlowPrincipal Principal { get; }

    protected EdgeMetrics Metrics { get; }

    /// <summary>Cancelled when the connection is closing: catch-up readers and waits stop.</summary>
    public CancellationTokenSource Closing { get; } = new();

    /// <summary>The close status the connection ends with (WebSocket codes; SSE just ends).</summary>
    public int CloseCode { get; private set; } = CloseCodes.Normal;

    public string CloseReason { get; private set; } = "";

    /// <summary>Whether events still buffered are written before closing.</summary>
    protected bool DrainOnClose { get; private set; } = true;

    /// <summary>The most events, and about the most bytes, one batched write carries.</summary>
    internal const int MaxBatchEvents = 512;
    internal const int MaxBatchBytes = 64 * 1024;

    /// <summary>The most replay runs one connection holds at once (about 1 MiB of events).</summary>
    internal const int MaxReplayRuns = 16;

    /// <summary>Offers a live event; false when the buffer is full (the subscriber falls behind).</summary>
    public bool TryEnqueue(EdgeEvent e, bool batch = false) => _outbound.Writer.TryWrite(new Outbound(e, null, batch));

    /// <summary>Queues a control message only if there is room now (heartbeats).</summary>
    protected bool TryEnqueueControl(byte[] bytes) => _outbound.Writer.TryWrite(new Outbound(null, bytes));

    /// <summary>Waits for room (control replies).</summary>
    protected ValueTask EnqueueAsync(Outbound item, CancellationToken cancellationToken) => _outbound.Writer.WriteAsync(item, cancellationToken);

    /// <summary>Buffers a run of replayed events, waiting while the connection holds its most runs or the buffer is full.</summary>
    public async ValueTask EnqueueReplayAsync(EventRun run, CancellationToken cancellationToken)
    {
        await ReplayRuns.Writer.WriteAsync(0, cancellationToken);
        try
        {
            if (!_outbound.Writer.TryWrite(new Outbound(null, null, true, run)))
            {
                await WaitForRoomAsync(cancellationToken);
                await EnqueueAsync(new Outbound(null, null, true, run), cancellationToken);
            }
        }
        catch
        {
            ReplayRuns.Reader.TryRead(out _);
            throw;
        }
    }

    /// <summary>Waits until at most half the buffer is taken (or the connection closes).</summary>
    private Task WaitForRoomAsync(CancellationToken cancellationToken)
    {
        if (_outbound.Reader.Count <= _capacity / 2 || CloseRequested)
        {
            return Task.CompletedTask;
        }

        var room = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _room, room);
        // The writer may have drained the buffer between the check and the publication above.
        if (_outbound.Reader.Count <= _capacity / 2 || CloseRequested)
        {
            room.TrySetResult();
        }

        return room.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// True when the buffer has been at least half full with nothing written for longer than
    /// <paramref name="timeout"/>. Half, not full: catch-up tops the buffer up only once the writer
    /// drained it to half (<see cref="WaitForRoomAsync"/>), so a stalled writer may leave it anywhere
    /// between half and full.
    /// </summary>
    public bool IsStalled(TimeSpan timeout) =>
        (_outbound.Reader.Count >= Math.Max(1, _capacity / 2) || Volatile.Read(ref _replayRuns)?.Reader.Count == MaxReplayRuns)
        && Environment.TickCount64 - Interlocked.Read(ref _lastProgress) > timeout.TotalMilliseconds;

    /// <summary>Asks the connection to close with a status; the first request wins.</summary>
    public void RequestClose(int code, string reason, bool drain)
    {
        if (Interlocked.Exchange(ref _closeRequested, 1) != 0)
        {
            return;
        }

        CloseCode = code;
        CloseReason = reason;
        DrainOnClose = drain;
        _outbound.Writer.TryComplete();
        Interlocked.Exchange(ref _room, null)?.TrySetResult();
        try
        {
            Closing.Cancel();
        }
        finally
        {
            OnCloseRequested();
        }
    }

    /// <summary>Called once, when the connection is first asked to close (no token registration per connection).</summary>
    protected virtual void OnCloseRequested()
    {
    }

    public bool CloseRequested => Volatile.Read(ref _closeRequested) != 0;

    /// <summary>
    /// Writes buffered items until the connection closes. Batched events waiting next to each other
    /// go out in one write (<see cref="WriteEventsAsync"/>), up to <see cref="MaxBatchEvents"/> and
    /// about <see cref="MaxBatchBytes"/>: a catch-up pays the per-write cost once per batch, not per event.
    /// </summary>
    protected async Task RunWriterAsync(CancellationToken cancellationToken)
    {
        var reader = _outbound.Reader;
        while (await reader.WaitToReadAsync(cancellationToken))
        {
            Interlocked.Exchange(ref _lastProgress, Environment.TickCount64);
            while (reader.TryRead(out var item))
            {
                if (CloseRequested && !DrainOnClose)
                {
                    return;
                }

                if (item.Run is { } run)
                {
                    try
                    {
                        await (run.Batch ? WriteEventsAsync(run.Events, cancellationToken) : WriteEachAsync(run.Events, cancellationToken));
                        Metrics.EventsWritten(run.Count, run.Bytes);
                    }
                    finally
                    {
                        run.Return();
                        ReplayRuns.Reader.TryRead(out _);
                    }
                }
                else if (item.Event is { } e && item.Batch)
                {
                    // Live events of batched subscriptions waiting next to each other go out together.
                    var live = new EventRun();
                    while (true)
                    {
                        live.Add(new WireEvent(e.Seq, e.Position, e.EventType, e.Json), e.ReleaseBefore);
                        if (live.Full || !reader.TryPeek(out var next) || !next.Batch || next.Event is null || !reader.TryRead(out next))
                        {
                            break;
                        }

                        e = next.Event!;
                    }

                    try
                    {
                        await WriteEventsAsync(live.Events, cancellationToken);
                        Metrics.EventsWritten(live.Count, live.Bytes);
                    }
                    finally
                    {
                        live.Return();
                    }
                }
                else if (item.Event is { } single)
                {
                    if (single.ReleaseBefore is { } written)
                    {
                        ArrayPool<byte>.Shared.Return(written);
                    }

                    await WriteEventAsync(single, cancellationToken);
                    Metrics.EventWritten(single.Json.Length);
                }
                else if (item.Control is { } control)
                {
                    await WriteControlAsync(control, cancellationToken);
                }

                Interlocked.Exchange(ref _lastProgress, Environment.TickCount64);
                if (Volatile.Read(ref _room) is not null && _outbound.Reader.Count <= _capacity / 2)
                {
                    Interlocked.Exchange(ref _room, null)?.TrySetResult();
                }
            }
        }
    }

    protected abstract ValueTask WriteEventAsync(EdgeEvent e, CancellationToken cancellationToken);

    /// <summary>Writes replayed events of a subscription without batches, in order, each as a single event.</summary>
    protected abstract ValueTask WriteEachAsync(ArraySegment<WireEvent> events, CancellationToken cancellationToken);

    /// <summary>Writes events of subscriptions that take batches, in order, in one write where the transport allows.</summary>
    protected abstract ValueTask WriteEventsAsync(ArraySegment<WireEvent> events, CancellationToken cancellationToken);

    protected abstract ValueTask WriteControlAsync(byte[] json, CancellationToken cancellationToken);
}
