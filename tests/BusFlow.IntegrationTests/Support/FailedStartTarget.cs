using BusFlow.Contracts;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.IntegrationTests.Support;

/// <summary>
/// The process whose start fails after its bus started (<c>dotnet BusFlow.IntegrationTests.dll
/// failed-start</c>, the virtual host in BUSFLOW_FAILED_START_VHOST): a worker of
/// <see cref="Step"/> whose report outbox finds its database away (a transient failure, retried
/// with back-off), and a hosted service registered after BusFlow that fails the start once a step
/// has been retried. Like BusFlow.Host, it runs the host and exits when its start fails.
/// </summary>
public static class FailedStartTarget
{
    public const string Step = "doomed-step";

    public const string Failure = "a hosted service after the bus failed to start";

    public static async Task<int> RunAsync()
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(RabbitMqVirtualHost.Settings(Environment.GetEnvironmentVariable("BUSFLOW_FAILED_START_VHOST")!));
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var away = new DatabaseAway();
        builder.Services.AddBusFlow(builder.Configuration, b =>
        {
            b.RunSaga = false;
            b.TreatAsTransient(e => e is TimeoutException);
            b.AddWorker(Step, _ => Task.FromResult(StepResult.Success()));
        });
        builder.Services.AddSingleton(away);
        builder.Services.AddScoped<IStepReportOutbox>(sp => sp.GetRequiredService<DatabaseAway>());
        builder.Services.AddSingleton<IHostedService>(new FailsOnceTheDatabaseWasAway(away.Reached.Task));
        using var host = builder.Build();
        await host.RunAsync();
        return 0;
    }

    /// <summary>The worker's report outbox with its database away: every look-up times out.</summary>
    private sealed class DatabaseAway : IStepReportOutbox
    {
        public TaskCompletionSource Reached { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ValueTask<bool> AlreadyHandledAsync(ConsumeContext<ExecuteStep> context)
        {
            Reached.TrySetResult();
            throw new TimeoutException("the worker's database is away");
        }

        public Task ReportAsync(ConsumeContext<ExecuteStep> context, object report, IReadOnlyList<Func<StepCommitContext, Task>> effects) =>
            throw new TimeoutException("the worker's database is away");
    }

    private sealed class FailsOnceTheDatabaseWasAway(Task away) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            // A retry or two first, as in the chaos run.
            await away.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
            await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken);
            throw new InvalidOperationException(Failure);
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
