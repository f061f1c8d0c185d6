using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace BusFlow.Edge.WebSockets;

/// <summary>
/// The upgraded connection under a <c>/ws</c> WebSocket. While held (<see cref="Hold"/>), the
/// socket's writes gather in one buffer and reach the connection together at <see cref="ReleaseAsync"/>
/// or when the buffer fills: a replay of single frames then pays the server's write and flush once
/// per run of frames, not once per frame, and the frames stay single on the wire. Not held, every
/// write goes straight through (live events, replies, the socket's own pings and close), so
/// nothing waits in the buffer. Writes come one at a time (the WebSocket sends one frame at a time),
/// and the lock keeps a release from overlapping the socket's own pings.
/// </summary>
internal sealed class CorkedStream(Stream inner) : Stream
{
    private const int BufferBytes = 64 * 1024;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private byte[]? _buffer;
    private int _length;
    private volatile bool _held;

    /// <summary>Gathers the writes that follow until <see cref="ReleaseAsync"/>.</summary>
    public void Hold() => _held = true;

    /// <summary>Writes what was gathered and lets later writes through.</summary>
    public async ValueTask ReleaseAsync(CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            _held = false;
            await WriteGatheredAsync(cancellationToken);
        }
        finally
        {
            _lock.Release();
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            if (!_held || buffer.Length > BufferBytes)
            {
                await WriteGatheredAsync(cancellationToken);
                await inner.WriteAsync(buffer, cancellationToken);
                return;
            }

            _buffer ??= new byte[BufferBytes];
            if (_length + buffer.Length > _buffer.Length)
            {
                await WriteGatheredAsync(cancellationToken);
            }

            buffer.Span.CopyTo(_buffer.AsSpan(_length));
            _length += buffer.Length;
        }
        finally
        {
            _lock.Release();
        }
    }

    private async ValueTask WriteGatheredAsync(CancellationToken cancellationToken)
    {
        if (_length > 0)
        {
            var length = _length;
            _length = 0;
            await inner.WriteAsync(_buffer.AsMemory(0, length), cancellationToken);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count).GetAwaiter().GetResult();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.ReadAsync(buffer, offset, count, cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override bool CanRead => inner.CanRead;

    public override bool CanWrite => inner.CanWrite;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }

    /// <summary>
    /// Puts a <see cref="CorkedStream"/> under the WebSocket of an HTTP/1.1 upgrade on <paramref name="path"/>:
    /// ASP.NET Core's WebSocket middleware, which runs after this, upgrades through the feature
    /// set here, and the endpoint finds the stream in the request's features.
    /// </summary>
    public static Task UnderWebSockets(HttpContext http, RequestDelegate next, PathString path)
    {
        if (http.Request.Path.Equals(path, StringComparison.Ordinal) && http.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
        {
            http.Features.Set<IHttpUpgradeFeature>(new Upgrade(upgrade, http.Features));
        }

        return next(http);
    }

    private sealed class Upgrade(IHttpUpgradeFeature inner, IFeatureCollection features) : IHttpUpgradeFeature
    {
        public bool IsUpgradableRequest => inner.IsUpgradableRequest;

        public async Task<Stream> UpgradeAsync()
        {
            var corked = new CorkedStream(await inner.UpgradeAsync());
            features.Set(corked);
            return corked;
        }
    }
}
