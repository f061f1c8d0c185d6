using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using BusFlow.Edge.Tests.Support;
using BusFlow.Store;

namespace BusFlow.Edge.Tests;

/// <summary>The WebSocket protocol on a real Kestrel with real ClientWebSocket clients.</summary>
public sealed class When_subscribing_over_WebSocket(EdgeServerFixture fixture) : IClassFixture<EdgeServerFixture>
{
    private EdgeServer Server => fixture.Server;

    [Fact]
    public async Task Should_relay_a_pipeline_live_from_start_to_end_gapless()
    {
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        var id = await Server.Http.StartAsync("demo", new { delayMs = 20, progressTicks = 2 });
        await ws.SubscribeAsync(id.ToString(), after: 0);
        var events = await ws.ReceiveUntilAsync(e => e.IsTerminal());
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Seq()));
        Assert.Equal("PipelineStarted", events[0].Type());
        Assert.Equal("PipelineCompleted", events[^1].Type());
        Assert.All(events, e => Assert.True(e.Position() > 0));
        Assert.Equal(events.Select(e => e.Position()).Order(), events.Select(e => e.Position()));
        var completed = events.First(e => e.Type() == "StepCompleted");
        Assert.Equal("demo", completed.GetProperty("definition").GetString());
        Assert.True(completed.TryGetProperty("durationMs", out _));
        Assert.True(completed.TryGetProperty("stepIndex", out _));
    }

    [Fact]
    public async Task Should_resume_at_every_point_of_a_run_without_gaps_or_duplicates()
    {
        var id = await Server.Http.StartAsync("demo", new { delayMs = 1, progressTicks = 1 });
        await Server.Http.WaitForEndAsync(id);
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        await ws.SubscribeAsync(id.ToString(), after: 0);
        var all = await ws.ReceiveUntilAsync(e => e.IsTerminal());
        await ws.SendAsync(new { type = "unsubscribe", pipelineId = id.ToString() });
        Assert.Equal("unsubscribed", (await ws.ReceiveAsync())!.Value.Type());

        for (var after = 0; after < all.Count; after++)
        {
            await ws.SubscribeAsync(id.ToString(), after: after);
            var rest = await ws.ReceiveUntilAsync(e => e.IsTerminal());
            Assert.Equal(all.Skip(after).Select(e => e.Seq()), rest.Select(e => e.Seq()));
            Assert.Equal(all.Skip(after).Select(e => e.GetRawText()), rest.Select(e => e.GetRawText()));
            await ws.SendAsync(new { type = "unsubscribe", pipelineId = id.ToString() });
            Assert.Equal("unsubscribed", (await ws.ReceiveAsync())!.Value.Type());
        }
    }

    [Fact]
    public async Task Should_replay_from_the_store_the_very_bytes_it_sent_live_with_their_positions()
    {
        var run = Guid.NewGuid().ToString("N");
        await using var live = await WsClient.ConnectAsync(Server.WebSocketUri());
        await live.SubscribeAsync("*", tags: new() { ["run"] = run });
        var id = await Server.Http.StartAsync("demo", new { delayMs = 1, progressTicks = 2 }, new() { ["run"] = run });
        var sent = (await live.ReceiveUntilAsync(e => e.IsTerminal())).Where(e => e.PipelineId() == id).ToList();

        // No tenant and no tag filter: the stored JSON goes out with the position spliced in.
        await using var replay = await WsClient.ConnectAsync(Server.WebSocketUri());
        await replay.SubscribeAsync("*", after: sent[0].Position() - 1);
        var replayed = new List<JsonElement>();
        while (replayed.Count < sent.Count)
        {
            var e = (await replay.ReceiveAsync())!.Value;
            if (e.IsEvent() && e.PipelineId() == id)
            {
                replayed.Add(e);
            }
        }

        Assert.Equal(sent.Select(e => e.GetRawText()), replayed.Select(e => e.GetRawText()));

        // A type filter is decided from the stored columns; the bytes are the same.
        await replay.SubscribeAsync(id.ToString(), after: 0, eventTypes: ["StepProgress", "PipelineCompleted"]);
        var filtered = await replay.ReceiveUntilAsync(e => e.IsTerminal() && e.PipelineId() == id);
        Assert.Equal(
            sent.Where(e => e.Type() is "StepProgress" or "PipelineCompleted").Select(e => e.GetRawText()),
            filtered.Where(e => e.IsEvent() && e.PipelineId() == id && e.Type() is "StepProgress" or "PipelineCompleted").Select(e => e.GetRawText()));
    }

    [Fact]
    public async Task Should_resume_mid_run_from_the_store_and_continue_live()
    {
        var id = await Server.Http.StartAsync("ticker", new { ticks = 30, delayMs = 15 });
        await using var first = await WsClient.ConnectAsync(Server.WebSocketUri());
        await first.SubscribeAsync(id.ToString(), after: 0);
        var early = await first.ReceiveUntilAsync(e => e.Seq() >= 6);
        await first.DisposeAsync();

        await using var second = await WsClient.ConnectAsync(Server.WebSocketUri());
        await second.SubscribeAsync(id.ToString(), after: early[^1].Seq());
        var rest = await second.ReceiveUntilAsync(e => e.IsTerminal());
        var seqs = early.Concat(rest).Select(e => e.Seq()).ToList();
        Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs);
    }

    [Fact]
    public async Task Should_send_every_visible_pipeline_to_a_wildcard_subscriber_filtered_by_tags_and_types_and_resume_by_position()
    {
        var run = Guid.NewGuid().ToString("N");
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        await ws.SubscribeAsync("*", eventTypes: ["PipelineStarted", "PipelineCompleted"], tags: new() { ["run"] = run });
        var tagged = new[]
        {
            await Server.Http.StartAsync("wordcount", new { texts = new[] { "a" } }, new() { ["run"] = run }),
            await Server.Http.StartAsync("wordcount", new { texts = new[] { "b" } }, new() { ["run"] = run, ["extra"] = "x" }),
        };
        var untagged = await Server.Http.StartAsync("wordcount", new { texts = new[] { "c" } }, new() { ["run"] = "other" });
        var received = new List<JsonElement>();
        while (received.Count(e => e.Type() == "PipelineCompleted") < 2)
        {
            received.Add((await ws.ReceiveAsync())!.Value);
        }

        Assert.All(received, e => Assert.Contains(e.PipelineId(), tagged));
        Assert.All(received, e => Assert.Contains(e.Type(), new[] { "PipelineStarted", "PipelineCompleted" }));
        Assert.Equal(4, received.Count);
        Assert.Equal(received.Select(e => e.Position()).Order(), received.Select(e => e.Position()));
        await Server.Http.WaitForEndAsync(untagged);

        // Resume by position: everything after the first event, same filter, from the store.
        await using var again = await WsClient.ConnectAsync(Server.WebSocketUri());
        await again.SubscribeAsync("*", after: received[0].Position(), eventTypes: ["PipelineStarted", "PipelineCompleted"], tags: new() { ["run"] = run });
        var resumed = new List<JsonElement>();
        while (resumed.Count < 3)
        {
            resumed.Add((await again.ReceiveAsync())!.Value);
        }

        Assert.Equal(received.Skip(1).Select(e => e.GetRawText()), resumed.Select(e => e.GetRawText()));
    }

    [Fact]
    public async Task Should_carry_tags_to_child_pipelines_so_a_tag_subscriber_sees_the_tree()
    {
        var team = Guid.NewGuid().ToString("N");
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        await ws.SubscribeAsync("*", tags: new() { ["team"] = team });
        var parent = await Server.Http.StartAsync("parent", new { ticks = 2, delayMs = 5 }, new() { ["team"] = team });
        var received = await ws.ReceiveUntilAsync(e => e.PipelineId() == parent && e.IsTerminal());
        var child = received.Where(e => e.PipelineId() != parent).ToList();
        Assert.NotEmpty(child);
        Assert.All(child, e => Assert.Equal(parent, e.GetProperty("parentPipelineId").GetGuid()));
        Assert.All(child, e => Assert.Equal(team, e.GetProperty("tags").GetProperty("team").GetString()));
        Assert.Contains(child, e => e.Type() == "PipelineCompleted");
    }

    [Fact]
    public async Task Should_hold_several_subscriptions_on_one_socket()
    {
        var a = await Server.Http.StartAsync("ticker", new { ticks = 2, delayMs = 5 });
        var b = await Server.Http.StartAsync("ticker", new { ticks = 2, delayMs = 5 });
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        await ws.SendAsync(new { type = "subscribe", pipelineId = a.ToString(), after = 0 });
        await ws.SendAsync(new { type = "subscribe", pipelineId = b.ToString(), after = 0 });
        var received = new List<JsonElement>();
        while (received.Count(e => e.IsEvent() && e.IsTerminal()) < 2)
        {
            received.Add((await ws.ReceiveAsync())!.Value);
        }

        Assert.Equal(2, received.Count(e => e.Type() == "subscribed"));
        foreach (var id in new[] { a, b })
        {
            var mine = received.Where(e => e.IsEvent() && e.PipelineId() == id).Select(e => e.Seq()).ToList();
            Assert.Equal(Enumerable.Range(1, mine.Count).Select(i => (long)i), mine);
        }
    }

    [Fact]
    public async Task Should_read_messages_larger_than_the_idle_buffer_up_to_the_frame_limit()
    {
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        foreach (var size in new[] { 100, 511, 513, 4_000, 15_000 })
        {
            var pad = new string('x', size);
            await ws.SendAsync(new { type = "subscribe", pipelineId = "*", tags = new Dictionary<string, string> { ["pad"] = pad } });
            Assert.Equal("subscribed", (await ws.ReceiveAsync())!.Value.Type());
        }

        await ws.SendTextAsync($$"""{"type":"ping","pad":"{{new string('y', 20_000)}}"}""");
        Assert.Equal("frame_too_large", (await ws.ReceiveAsync())!.Value.GetProperty("code").GetString());
        await ws.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await ws.ReceiveAsync())!.Value.Type());
    }

    [Fact]
    public async Task Should_answer_ping_with_pong()
    {
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        await ws.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await ws.ReceiveAsync())!.Value.Type());
    }

    [Fact]
    public async Task Should_answer_each_bad_input_with_its_error_code_and_keep_the_socket_open()
    {
        await using var ws = await WsClient.ConnectAsync(Server.WebSocketUri());
        var cases = new (Func<Task> Send, string Code)[]
        {
            (() => ws.SendTextAsync("{not json"), "invalid_json"),
            // Empty frames: taken whole by the idle connection's zero-byte wait.
            (() => ws.SendTextAsync(""), "invalid_json"),
            (() => ws.SendBinaryAsync([]), "binary_not_supported"),
            (() => ws.SendTextAsync("[1,2]"), "invalid_message"),
            (() => ws.SendTextAsync("""{"pipelineId":"*"}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"launch"}"""), "unknown_type"),
            (() => ws.SendTextAsync("""{"type":"subscribe"}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":42}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"not-a-uuid"}"""), "invalid_pipeline_id"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","after":"12"}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","after":-1}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","eventTypes":"StepCompleted"}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","eventTypes":["StepExploded"]}"""), "unknown_event_type"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","tags":{"a":1}}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","batch":"yes"}"""), "invalid_message"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","tags":{"k":"\udc00"}}"""), "invalid_string"),
            (() => ws.SendTextAsync("""{"type":"\ud800"}"""), "invalid_string"),
            (() => ws.SendTextAsync($$"""{"type":"subscribe","pipelineId":"{{Guid.NewGuid()}}","after":5}"""), "after_out_of_range"),
            (() => ws.SendTextAsync("""{"type":"subscribe","pipelineId":"*","after":999999999999}"""), "after_out_of_range"),
            (() => ws.SendTextAsync($$"""{"type":"unsubscribe","pipelineId":"{{Guid.NewGuid()}}"}"""), "not_subscribed"),
            (() => ws.SendBinaryAsync([1, 2, 3]), "binary_not_supported"),
            (() => ws.SendTextAsync($$"""{"type":"ping","pad":"{{new string('x', 40_000)}}"}"""), "frame_too_large"),
        };
        foreach (var (send, code) in cases)
        {
            await send();
            var reply = (await ws.ReceiveAsync())!.Value;
            Assert.Equal("error", reply.Type());
            Assert.Equal(code, reply.GetProperty("code").GetString());
            Assert.False(string.IsNullOrEmpty(reply.GetProperty("message").GetString()));
            Assert.Equal(WebSocketState.Open, ws.State);
        }

        // Still a working connection.
        var id = await Server.Http.StartAsync("wordcount", new { texts = new[] { "ok" } });
        await ws.SubscribeAsync(id.ToString(), after: 0);
        await ws.ReceiveUntilAsync(e => e.IsTerminal());
    }

    [Fact]
    public async Task Should_fail_a_text_frame_that_is_not_UTF8_with_1007_and_keep_serving_others()
    {
        // RFC 6455 section 8.1: an endpoint that finds a text message not to be UTF-8 must fail the
        // connection; 1007 (invalid payload data) tells the client why. Nothing of it is read further.
        await using var bad = await WsClient.ConnectAsync(Server.WebSocketUri());
        await using var other = await WsClient.ConnectAsync(Server.WebSocketUri());
        var bytes = Encoding.UTF8.GetBytes("""{"type":"subscribe","pipelineId":"*","tags":{"k":"a?b"}}""");
        bytes[Array.IndexOf(bytes, (byte)'?')] = 0xC3;
        await bad.SendTextBytesAsync(bytes);

        Assert.Null(await bad.ReceiveAsync());
        Assert.Equal(WebSocketCloseStatus.InvalidPayloadData, bad.CloseStatus);
        await other.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await other.ReceiveAsync())!.Value.Type());
    }

    [Fact]
    public async Task Should_refuse_ten_thousand_subscriptions_on_one_socket_and_keep_serving_everyone_else()
    {
        await using var flooder = await WsClient.ConnectAsync(Server.WebSocketUri());
        await using var bystander = await WsClient.ConnectAsync(Server.WebSocketUri());
        var id = await Server.Http.StartAsync("ticker", new { ticks = 20, delayMs = 10 });
        await bystander.SubscribeAsync(id.ToString(), after: 0);

        var flood = Task.Run(async () =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                await flooder.SendAsync(new { type = "subscribe", pipelineId = Guid.NewGuid().ToString() });
            }
        });
        var replies = new Dictionary<string, int>();
        var total = 0;
        while (total < 10_000)
        {
            var reply = (await flooder.ReceiveAsync(TimeSpan.FromSeconds(60)))!.Value;
            var key = reply.Type() == "error" ? reply.GetProperty("code").GetString()! : reply.Type();
            replies[key] = replies.GetValueOrDefault(key) + 1;
            total++;
        }

        await flood;
        Assert.InRange(replies.GetValueOrDefault("subscribed"), 1, 100);
        Assert.True(replies.GetValueOrDefault("rate_limited") + replies.GetValueOrDefault("too_many_subscriptions") >= 9_900, string.Join(", ", replies));
        var events = await bystander.ReceiveUntilAsync(e => e.IsTerminal());
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Seq()));
        Assert.Equal(WebSocketState.Open, flooder.State);
    }
}

/// <summary>Found by the chaos runner: a subscribe during a database restart threw out of the connection and dropped the socket.</summary>
public sealed class When_a_subscribe_cannot_read_the_store
{
    [ServerFact]
    public async Task Should_answer_store_unavailable_and_keep_the_socket_open()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var server = await EdgeServer.StartAsync(database: db);
        await using var ws = await WsClient.ConnectAsync(server.WebSocketUri());
        await ws.SendAsync(new { type = "subscribe", pipelineId = "*" });
        Assert.Equal("subscribed", (await ws.ReceiveAsync())!.Value.Type());

        // The database goes away under the running edge.
        Npgsql.NpgsqlConnection.ClearAllPools();
        await using (var admin = new Npgsql.NpgsqlConnection(TestDatabase.PostgresServer + ";Database=postgres"))
        {
            await admin.OpenAsync();
            await using var drop = new Npgsql.NpgsqlCommand($"DROP DATABASE {new Npgsql.NpgsqlConnectionStringBuilder(db.ConnectionString).Database} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        }

        await ws.SendAsync(new { type = "subscribe", pipelineId = Guid.NewGuid().ToString(), after = 3 });
        var error = (await ws.ReceiveAsync(TimeSpan.FromSeconds(60)))!.Value;
        Assert.Equal("error", error.Type());
        Assert.Equal("store_unavailable", error.GetProperty("code").GetString());

        // The socket and its live subscription stay.
        await ws.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await ws.ReceiveAsync())!.Value.Type());
        Assert.Equal(System.Net.WebSockets.WebSocketState.Open, ws.State);
    }
}
