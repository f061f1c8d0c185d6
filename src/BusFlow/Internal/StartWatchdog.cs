using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Ends a process whose start has not finished within <c>BusFlow:StartTimeout</c>, so that its
/// supervisor (systemd, Kubernetes, docker-compose's <c>restart: on-failure</c>) starts it again
/// instead of leaving it up and never ready. A start that fails already ends the process; this is
/// for one that waits for good: MassTransit's bus start, cancelled at its own timeout while the
/// broker comes and goes, can wait for its receive endpoints without end. Armed before any hosted
/// service starts, disarmed once the host has started; not counting while the store applies
/// migrations (<see cref="Hold"/>: a migration cut off would leave its lock and fail every later
/// start), nor under a debugger.
/// </summary>
internal sealed partial class StartWatchdog(
    IHostApplicationLifetime lifetime,
    TimeSpan timeout,
    TimeProvider time,
    ILogger<StartWatchdog> logger,
    Action<string> end) : IStartWatchdog, IHostedLifecycleService, IDisposable
{
    private readonly Lock _lock = new();

    /// <summary>The timeout, within what a timer takes (about 49 days).</summary>
    private TimeSpan Due => timeout < TimeSpan.FromDays(40) ? timeout : TimeSpan.FromDays(40);
    private ITimer? _timer;
    private int _holds;

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        if (timeout > TimeSpan.Zero && !System.Diagnostics.Debugger.IsAttached)
        {
            lock (_lock)
            {
                _timer = time.CreateTimer(_ => Expire(), null, Due, Timeout.InfiniteTimeSpan);
            }

            lifetime.ApplicationStarted.Register(Dispose);
        }

        return Task.CompletedTask;
    }

    /// <summary>Stops the count until the returned handle is disposed; then it starts again from the whole timeout.</summary>
    public IDisposable Hold()
    {
        lock (_lock)
        {
            _holds++;
            _timer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        return new Release(this);
    }

    private void Resume()
    {
        lock (_lock)
        {
            if (--_holds == 0)
            {
                _timer?.Change(Due, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private sealed class Release(StartWatchdog watchdog) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                watchdog.Resume();
            }
        }
    }

    private void Expire()
    {
        lock (_lock)
        {
            // A callback queued just before a Hold or the start's end does nothing.
            if (_holds > 0 || _timer is null)
            {
                return;
            }
        }

        if (lifetime.ApplicationStarted.IsCancellationRequested || lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return;
        }

        var message = $"BusFlow did not finish starting within {timeout} ('{BusFlowOptions.Section}:StartTimeout'); ending the process so that its supervisor starts it again. The lines logged before this one say what it was waiting for (the broker, the database).";
        LogStuck(logger, message);
        end(message);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        lock (_lock)
        {
            _timer?.Dispose();
            _timer = null;
        }
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "{Message}")]
    private static partial void LogStuck(ILogger logger, string message);
}
