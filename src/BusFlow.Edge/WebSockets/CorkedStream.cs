using System.Buffers;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace BusFlow.Edge.WebSockets;

/// <summary>
/// The upgraded connection under a <c>/ws</c> WebSocket. While held (<see cref="Hold"/>), the
/// socket's writes gather in one buffer and reach the connection together at <see cref="ReleaseAsync"/>
/// or when the buffer fills: a replay of single frames then pays the server's write and flush once
/// per run of frames, not once per frame, and the frames stay single on the wire. Not held, every
/// write goes straight through (live events, replies, the socket's own pings and close), so
/// nothing waits in the buffer; a ping or close the socket sends during a run goes out with the
/// run, in order. Writes come one at a time (the WebSocket sends one frame at a time), and the lock
/// keeps a release from overlapping the socket's own pings. An idle connection carries this one
/// object (it is also the request's upgrade feature, which hands it to the WebSocket): the lock is
/// made at the first hold, and the buffer is rented from the shared pool for a run and given back
/// at its release.
/// </summary>
internal sealed class CorkedStream(IHttpUpgradeFeature upgrade) : Stream, IHttpUpgradeFeature
{
    private const int BufferBytes = 64 * 1024;
    private Stream _inner = Null;
    private SemaphoreSlim? _lock;
    private byte[]? _buffer;
    private int _length;
    private volatile bool _held;

    public bool IsUpgradableRequest => upgrade.IsUpgradableRequest;

    /// <summary>Upgrades the connection and puts this stream over it.</summary>
    public async Task<Stream> UpgradeAsync()
    {
        _inner = await upgrade.UpgradeAsync();
        return this;
    }

    /// <summary>Gathers the writes that follow until <see cref="ReleaseAsync"/>.</summary>
    public void Hold()
    {
        // Made before the first hold takes effect: a write that sees the hold finds the lock. Only
        // the connection's writer holds and releases, so no two make it.
        _lock ??= new SemaphoreSlim(1, 1);
        _held = true;
    }

    /// <summary>Writes what was gathered and lets later writes through.</summary>
    public async ValueTask ReleaseAsync(CancellationToken cancellationToken)
    {
        await _lock!.WaitAsync(cancellationToken);
        try
        {
            _held = false;
            await WriteGatheredAsync(cancellationToken);
        }
        finally
        {
            // Written or failed: the run is over either way (a failed connection is being closed).
            _length = 0;
            if (_buffer is { } buffer)
            {
                _buffer = null;
                ArrayPool<byte>.Shared.Return(buffer);
            }

            _lock!.Release();
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_lock is not { } gate)
        {
            // Never held: nothing gathered, nothing to order with.
            await _inner.WriteAsync(buffer, cancellationToken);
            return;
        }

        await gate.WaitAsync(cancellationToken);
        try
        {
            if (!_held || buffer.Length > BufferBytes)
            {
                await WriteGatheredAsync(cancellationToken);
                await _inner.WriteAsync(buffer, cancellationToken);
                return;
            }

            _buffer ??= ArrayPool<byte>.Shared.Rent(BufferBytes);
            if (_length + buffer.Length > _buffer.Length)
            {
                await WriteGatheredAsync(cancellationToken);
            }

            buffer.Span.CopyTo(_buffer.AsSpan(_length));
            _length += buffer.Length;
        }
        finally
        {
            gate.Release();
        }
    }

    private async ValueTask WriteGatheredAsync(CancellationToken cancellationToken)
    {
        if (_length > 0)
        {
            var length = _length;
            _length = 0;
            await _inner.WriteAsync(_buffer.AsMemory(0, length), cancellationToken);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count).GetAwaiter().GetResult();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _inner.ReadAsync(buffer, offset, count, cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (_lock is not { } gate)
        {
            await _inner.FlushAsync(cancellationToken);
            return;
        }

        await gate.WaitAsync(cancellationToken);
        try
        {
            await WriteGatheredAsync(cancellationToken);
            await _inner.FlushAsync(cancellationToken);
        }
        finally
        {
            gate.Release();
        }
    }

    public override void Flush() => FlushAsync().GetAwaiter().GetResult();

    public override bool CanRead => _inner.CanRead;

    public override bool CanWrite => _inner.CanWrite;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
            _lock?.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await _inner.DisposeAsync();
        await base.DisposeAsync();
    }

    /// <summary>
    /// Puts a <see cref="CorkedStream"/> under the WebSocket of an HTTP/1.1 upgrade on <paramref name="path"/>:
    /// ASP.NET Core's WebSocket middleware, which runs after this, upgrades through the feature
    /// set here, and the endpoint finds it as the request's upgrade feature (<see cref="Of"/>).
    /// </summary>
    public static Task UnderWebSockets(HttpContext http, RequestDelegate next, PathString path)
    {
        if (http.Request.Path.Equals(path, StringComparison.Ordinal) && http.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
        {
            http.Features.Set<IHttpUpgradeFeature>(new CorkedStream(upgrade));
        }

        return next(http);
    }

    /// <summary>The stream under the request's WebSocket, when it was put there; else null.</summary>
    public static CorkedStream? Of(HttpContext http) => http.Features.Get<IHttpUpgradeFeature>() as CorkedStream;
}
