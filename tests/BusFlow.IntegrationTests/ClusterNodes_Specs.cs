using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Host.Samples;
using BusFlow.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.IntegrationTests;

/// <summary><c>BusFlow:RabbitMq:ClusterNodes</c>: a process connects through whichever node answers.</summary>
[Collection(RabbitMqCollection.Name)]
public sealed class When_a_cluster_node_is_down
{
    [ServerFact]
    public async Task Should_connect_through_the_next_node_within_the_first_attempt()
    {
        await using var vhost = await RabbitMqVirtualHost.Create();
        var settings = vhost.BusFlowSettings();
        // The first node is a port nothing listens on; the second is the test broker.
        settings["BusFlow:RabbitMq:ClusterNodes:0"] = $"127.0.0.1:{ClosedPort()}";
        settings["BusFlow:RabbitMq:ClusterNodes:1"] = $"{settings["BusFlow:RabbitMq:Host"]}:{settings["BusFlow:RabbitMq:Port"]}";
        var logs = new CapturedLogs();
        var events = new RecordedEvents();
        using var host = await BusFlowProcess.StartAsync(settings, b => SamplePipelines.Register(b), events, logs);
        try
        {
            var id = NewId.NextGuid();
            await host.Services.GetRequiredService<IBus>().Publish(new StartPipeline
            {
                PipelineId = id,
                Definition = "wordcount",
                Input = JsonSerializer.SerializeToElement(new { texts = new[] { "a b" } }),
            });
            Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromSeconds(60)));

            // The node that was down cost no failed attempt and no retry: MassTransit's UseCluster
            // offers one node per attempt and logs the refused one ("Connection Failed") before it
            // retries on the next node after a back-off.
            Assert.DoesNotContain(logs.Lines, l => l.Contains("MassTransit", StringComparison.Ordinal) && (l.Contains("Connection Failed", StringComparison.OrdinalIgnoreCase) || l.Contains("unreachable", StringComparison.OrdinalIgnoreCase)));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
