using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Host.Samples;
using BusFlow.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.IntegrationTests;

/// <summary><c>BusFlow:RabbitMq:QueueType</c>: the durable queues replicated over a RabbitMQ cluster.</summary>
[Collection(RabbitMqCollection.Name)]
public sealed class When_the_queues_are_quorum_queues
{
    [ServerTheory]
    [InlineData("Quorum", "quorum")]
    [InlineData(null, "classic")]
    public async Task Should_declare_the_durable_queues_with_the_type_set_and_run_pipelines_on_them(string? setting, string declared)
    {
        await using var vhost = await RabbitMqVirtualHost.Create();
        var settings = vhost.BusFlowSettings();
        settings["BusFlow:RabbitMq:QueueType"] = setting;
        var events = new RecordedEvents();
        using var host = await BusFlowProcess.StartAsync(settings, b => SamplePipelines.Register(b), events);
        try
        {
            var id = NewId.NextGuid();
            await host.Services.GetRequiredService<IBus>().Publish(new StartPipeline
            {
                PipelineId = id,
                Definition = "wordcount",
                Input = JsonSerializer.SerializeToElement(new { texts = new[] { "a b", "b" } }),
            });
            Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromSeconds(60)));

            var types = await vhost.QueueTypesAsync();
            Assert.Equal(declared, types["busflow-pipeline"]);
            Assert.Equal(declared, types["busflow-step-count-words"]);
            // The application's own consumer endpoint, configured through AddBusFlow, too.
            Assert.Equal(declared, types.Single(q => q.Key.Contains("recording", StringComparison.OrdinalIgnoreCase)).Value);
            // A worker process's temporary cancel queue cannot be a quorum queue.
            Assert.All(types.Where(q => q.Key.StartsWith("busflow-node", StringComparison.Ordinal)), q => Assert.Equal("classic", q.Value));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [ServerFact]
    public async Task Should_keep_a_step_sent_before_any_worker_ran_in_its_quorum_queue_until_a_worker_process_starts()
    {
        await using var vhost = await RabbitMqVirtualHost.Create();
        var settings = vhost.BusFlowSettings();
        settings["BusFlow:RabbitMq:QueueType"] = "Quorum";
        var events = new RecordedEvents();
        // The deciding process has the pipeline and no worker for its step: no process has declared
        // the step's queue when the saga sends the step to it.
        using var saga = await BusFlowProcess.StartAsync(settings, b => b.AddRemoteWorker("later-step").AddPipeline("later", p => p.Step("later-step")), events);
        var id = NewId.NextGuid();
        await saga.Services.GetRequiredService<IBus>().Publish(new StartPipeline { PipelineId = id, Definition = "later" });
        var types = await vhost.QueueTypesAsync();
        for (var waited = 0; !types.ContainsKey("busflow-step-later-step") && waited < 300; waited++)
        {
            await Task.Delay(100);
            types = await vhost.QueueTypesAsync();
        }

        Assert.Equal("quorum", types["busflow-step-later-step"]);

        // A worker process that starts only now finds the step waiting in its queue.
        using var late = await BusFlowProcess.StartAsync(settings, b =>
        {
            b.RunSaga = false;
            b.AddWorker("later-step", _ => Task.FromResult(StepResult.Success()));
        });
        Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromSeconds(60)));
    }
}
