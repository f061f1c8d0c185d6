namespace BusFlow.Store.Internal;

/// <summary>
/// SQLite has one write lock per file. Writers of this process that find it taken would wait in
/// SQLite's busy handler, which sleeps 1, 2, 5, 10, 15... ms between looks and leaves a released lock
/// idle meanwhile; through this gate they queue in memory instead, and the next one goes the moment
/// the last one committed. The store's frequent writers (group commits, positioning, delivered marks)
/// pass it; other processes' writers, and this process's rare ones, still meet the busy handler. On
/// the servers, which lock rows, it lets everyone through.
/// </summary>
internal sealed class StoreWriteGate(BusFlowStoreOptions options) : IDisposable
{
    private readonly SemaphoreSlim? _gate = options.Dialect.SingleWriter ? new SemaphoreSlim(1, 1) : null;

    /// <summary>Waits for this process's turn to write; dispose the result once the write committed or failed.</summary>
    public async ValueTask<Turn> EnterAsync(CancellationToken cancellationToken)
    {
        if (_gate is null)
        {
            return default;
        }

        await _gate.WaitAsync(cancellationToken);
        return new Turn(_gate);
    }

    public void Dispose() => _gate?.Dispose();

    /// <summary>One writer's turn.</summary>
    public readonly struct Turn(SemaphoreSlim? gate) : IDisposable
    {
        public void Dispose() => gate?.Release();
    }
}
