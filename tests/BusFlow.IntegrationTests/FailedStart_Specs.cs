using System.Diagnostics;
using BusFlow.Contracts;
using BusFlow.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.IntegrationTests;

/// <summary>
/// A process whose start fails after its bus started (a hosted service registered after BusFlow's
/// throws: in the long chaos run, the ledger sample's table while the database restarted). Its bus
/// was retrying steps whose reports could not be written (the database away); the host disposed
/// its services, and each retry then failed to create its consumer's scope. Retried a few times as
/// an ordinary failure, the steps went to the step queue's error queue, and their pipelines never
/// ended (34 of 900 in that run).
/// </summary>
[Collection(RabbitMqCollection.Name)]
public sealed class When_a_process_fails_to_start_after_its_bus_started
{
    [ServerFact]
    public async Task Should_leave_the_step_it_was_retrying_to_another_process_instead_of_the_error_queue()
    {
        await using var vhost = await RabbitMqVirtualHost.Create();
        var settings = vhost.BusFlowSettings();
        var events = new RecordedEvents();
        using var saga = await BusFlowProcess.StartAsync(settings, b => b.AddRemoteWorker(FailedStartTarget.Step).AddPipeline("doomed", p => p.Step(FailedStartTarget.Step)), events);
        var id = NewId.NextGuid();
        await saga.Services.GetRequiredService<IBus>().Publish(new StartPipeline { PipelineId = id, Definition = "doomed" });

        var start = new ProcessStartInfo("dotnet", [typeof(FailedStartTarget).Assembly.Location, "failed-start"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment = { ["BUSFLOW_FAILED_START_VHOST"] = vhost.Name },
        };
        using (var failing = Process.Start(start)!)
        {
            var output = failing.StandardOutput.ReadToEndAsync();
            var errors = failing.StandardError.ReadToEndAsync();
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            try
            {
                await failing.WaitForExitAsync(exited.Token);
            }
            catch (OperationCanceledException)
            {
                failing.Kill(entireProcessTree: true);
                throw;
            }

            var log = await output + await errors;
            Assert.NotEqual(0, failing.ExitCode);
            Assert.Contains(FailedStartTarget.Failure, log, StringComparison.Ordinal);
            Assert.Contains("the worker's database is away", log, StringComparison.Ordinal);
        }

        // The step went back to its queue when the process ended, not to the error queue.
        Assert.Equal(0, await vhost.MessagesInAsync($"busflow-step-{FailedStartTarget.Step}_error"));
        using var healthy = await BusFlowProcess.StartAsync(settings, b =>
        {
            b.RunSaga = false;
            b.AddWorker(FailedStartTarget.Step, _ => Task.FromResult(StepResult.Success()));
        });
        Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromSeconds(60)));
        Assert.Equal(0, await vhost.MessagesInAsync($"busflow-step-{FailedStartTarget.Step}_error"));
        await healthy.StopAsync();
        await saga.StopAsync();
    }
}
