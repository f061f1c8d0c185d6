using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using BusFlow.Edge.Tests.Support;

namespace BusFlow.Edge.Tests;

/// <summary>Slow and stalled subscribers, connection limits and shutdown, on a real Kestrel.</summary>
public sealed class When_a_subscriber_cannot_keep_up
{
    private static readonly object BigTicks = new { ticks = 1200, delayMs = 0, padding = new string('p', 8 * 1024) };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Should_keep_others_at_full_rate_and_serve_it_every_event_from_the_store_when_it_reads_again(bool batch)
    {
        await using var server = await EdgeServer.StartAsync(o => o.OutboundBuffer = 16);
        await using var slow = await WsClient.ConnectAsync(server.WebSocketUri(), o => o.SetBuffer(4096, 4096));
        await using var fast = await WsClient.ConnectAsync(server.WebSocketUri());
        var id = await server.Http.StartAsync("ticker", BigTicks);
        await slow.SubscribeAsync(id.ToString(), after: 0, batch: batch);
        await fast.SubscribeAsync(id.ToString(), after: 0, batch: batch);

        // The slow client reads nothing while the fast one takes the whole run.
        var catchingUpSeen = false;
        var fastEvents = new List<JsonElement>();
        for (var frames = 1; fastEvents.Count == 0 || !fastEvents[^1].IsTerminal(); frames++)
        {
            fastEvents.AddRange((await fast.ReceiveAsync(TimeSpan.FromSeconds(60)))!.Value.Events());
            if (frames % 20 == 0)
            {
                catchingUpSeen |= (await server.Http.GetJsonAsync("/api/metrics")).GetProperty("subscribersCatchingUp").GetInt64() > 0;
            }
        }

        Assert.Equal(Enumerable.Range(1, fastEvents.Count).Select(i => (long)i), fastEvents.Select(e => e.Seq()));
        Assert.True(catchingUpSeen, "the slow subscriber should have been moved to the store while it did not read");

        var slowEvents = await slow.ReceiveUntilAsync(e => e.IsTerminal(), TimeSpan.FromSeconds(60));
        Assert.Equal(fastEvents.Select(e => e.Seq()), slowEvents.Select(e => e.Seq()));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Should_close_a_stalled_connection_with_4000_and_let_it_resume_where_it_stopped(bool batch)
    {
        await using var server = await EdgeServer.StartAsync(o =>
        {
            o.OutboundBuffer = 16;
            o.StallTimeout = TimeSpan.FromSeconds(1);
        });
        await using var stalled = await WsClient.ConnectAsync(server.WebSocketUri(), o => o.SetBuffer(4096, 4096));
        var id = await server.Http.StartAsync("ticker", BigTicks);
        await stalled.SubscribeAsync(id.ToString(), after: 0, batch: batch);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((await server.Http.GetJsonAsync("/api/metrics")).GetProperty("connectionsClosedStalled").GetInt64() == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the stalled connection was never closed");
            await Task.Delay(100);
        }

        var before = new List<JsonElement>();
        while (await stalled.ReceiveAsync(TimeSpan.FromSeconds(30)) is { } message)
        {
            before.AddRange(message.Events());
        }

        Assert.Equal((WebSocketCloseStatus)4000, stalled.CloseStatus);
        await using var resumed = await WsClient.ConnectAsync(server.WebSocketUri());
        await resumed.SubscribeAsync(id.ToString(), after: before.Count == 0 ? 0 : before[^1].Seq(), batch: batch);
        var after = await resumed.ReceiveUntilAsync(e => e.IsTerminal(), TimeSpan.FromSeconds(60));
        var seqs = before.Concat(after).Select(e => e.Seq()).ToList();
        Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs);
    }

    [Fact]
    public async Task Should_refuse_connections_over_the_limit_with_1013()
    {
        await using var server = await EdgeServer.StartAsync(o => o.MaxConnections = 2);
        await using var one = await WsClient.ConnectAsync(server.WebSocketUri());
        await using var two = await WsClient.ConnectAsync(server.WebSocketUri());
        await one.SendAsync(new { type = "ping" });
        await one.ReceiveAsync();
        await two.SendAsync(new { type = "ping" });
        await two.ReceiveAsync();

        await using var three = await WsClient.ConnectAsync(server.WebSocketUri());
        Assert.Null(await three.ReceiveAsync());
        Assert.Equal((WebSocketCloseStatus)1013, three.CloseStatus);

        await one.CloseAsync();
        await Task.Delay(200);
        await using var four = await WsClient.ConnectAsync(server.WebSocketUri());
        await four.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await four.ReceiveAsync())!.Value.Type());
    }

    [Fact]
    public async Task Should_tell_clients_to_reconnect_elsewhere_with_1001_on_shutdown()
    {
        var server = await EdgeServer.StartAsync();
        try
        {
            await using var client = await WsClient.ConnectAsync(server.WebSocketUri());
            await client.SubscribeAsync("*");
            var stopping = server.StopAsync();
            JsonElement? message;
            do
            {
                message = await client.ReceiveAsync(TimeSpan.FromSeconds(15));
            }
            while (message is not null);

            Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, client.CloseStatus);
            await stopping;
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}

/// <summary>Fair use: one tenant at its share of connections is refused while the others keep connecting.</summary>
public sealed class When_a_tenant_holds_its_share_of_connections
{
    [Fact]
    public async Task Should_refuse_it_more_with_1013_and_503_and_keep_serving_other_tenants()
    {
        await using var server = await EdgeServer.StartAsync(o =>
        {
            o.Auth.ApiKeys["key-a"] = "tenant-a";
            o.Auth.ApiKeys["key-b"] = "tenant-b";
            o.MaxConnectionsPerTenant = 2;
        });
        using var a = server.Client("key-a");
        using var b = server.Client("key-b");
        var pipelineA = await a.StartAsync("hold");
        var pipelineB = await b.StartAsync("hold");

        // Tenant a's share: one WebSocket and one long-poll waiting for an event that does not come.
        await using var socket = await WsClient.ConnectAsync(server.WebSocketUri(), o => o.SetRequestHeader("X-Api-Key", "key-a"));
        await socket.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await socket.ReceiveAsync())!.Value.Type());
        // PipelineStarted and StepStarted: nothing more comes while the step holds.
        long after;
        while ((after = (await a.GetJsonAsync($"/api/pipelines/{pipelineA}")).GetProperty("lastSeq").GetInt64()) < 2)
        {
            await Task.Delay(50);
        }

        var waiting = a.GetAsync($"/api/pipelines/{pipelineA}/events?after={after}&waitMs=20000");
        await Task.Delay(500);

        // Its third: refused everywhere, with a reason and a time to come back.
        await using var third = await WsClient.ConnectAsync(server.WebSocketUri(), o => o.SetRequestHeader("X-Api-Key", "key-a"));
        Assert.Null(await third.ReceiveAsync());
        Assert.Equal((WebSocketCloseStatus)1013, third.CloseStatus);
        foreach (var path in new[] { $"/api/pipelines/{pipelineA}/stream", $"/api/pipelines/{pipelineA}/events?after={after}&waitMs=1000" })
        {
            using var refused = await a.GetAsync(path);
            var (status, code, body) = await refused.ProblemAsync();
            Assert.Equal((HttpStatusCode.ServiceUnavailable, "too_many_connections"), (status, code));
            Assert.Contains("MaxConnectionsPerTenant", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
            Assert.NotNull(refused.Headers.RetryAfter);
        }

        // Requests that hold nothing still work, and another tenant connects as before.
        Assert.Equal(HttpStatusCode.OK, (await a.GetAsync($"/api/pipelines/{pipelineA}")).StatusCode);
        await using var other = await WsClient.ConnectAsync(server.WebSocketUri(), o => o.SetRequestHeader("X-Api-Key", "key-b"));
        await other.SubscribeAsync(pipelineB.ToString(), after: 0);
        Assert.Equal("PipelineStarted", (await other.ReceiveAsync())!.Value.Type());
        using (var stream = await b.GetAsync($"/api/pipelines/{pipelineB}/stream", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
        }

        // A connection given back frees its place in the share.
        await socket.CloseAsync();
        await Task.Delay(300);
        await using var again = await WsClient.ConnectAsync(server.WebSocketUri(), o => o.SetRequestHeader("X-Api-Key", "key-a"));
        await again.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await again.ReceiveAsync())!.Value.Type());
        Assert.False(waiting.IsCompleted);
    }
}
