using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Ends a process whose start has not finished within <c>BusFlow:StartTimeout</c>, so that its
/// supervisor (systemd, Kubernetes, docker-compose's <c>restart: on-failure</c>) starts it again
/// instead of leaving it up and never ready. A start that fails already ends the process; this is
/// for one that waits for good: MassTransit's bus start, cancelled at its own timeout while the
/// broker comes and goes, can wait for its receive endpoints without end. Armed before any hosted
/// service starts, disarmed once the host has started.
/// </summary>
internal sealed partial class StartWatchdog(
    IHostApplicationLifetime lifetime,
    TimeSpan timeout,
    TimeProvider time,
    ILogger<StartWatchdog> logger,
    Action<string> end) : IHostedLifecycleService, IDisposable
{
    private ITimer? _timer;

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        if (timeout > TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            _timer = time.CreateTimer(_ => Expire(), null, timeout, Timeout.InfiniteTimeSpan);
            lifetime.ApplicationStarted.Register(() => _timer.Dispose());
        }

        return Task.CompletedTask;
    }

    private void Expire()
    {
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

    public void Dispose() => _timer?.Dispose();

    [LoggerMessage(Level = LogLevel.Critical, Message = "{Message}")]
    private static partial void LogStuck(ILogger logger, string message);
}
