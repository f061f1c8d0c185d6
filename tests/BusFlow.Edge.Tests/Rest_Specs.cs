using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using BusFlow.Edge.Tests.Support;

namespace BusFlow.Edge.Tests;

/// <summary>The REST API of the wire contract, on a real Kestrel with the embedded defaults.</summary>
public sealed class When_using_the_REST_API(EdgeServerFixture fixture) : IClassFixture<EdgeServerFixture>
{
    private HttpClient Http => fixture.Server.Http;

    [Fact]
    public async Task Should_list_definitions_with_steps_edges_and_levels()
    {
        var definitions = await Http.GetJsonAsync("/api/definitions");
        var demo = definitions.EnumerateArray().Single(d => d.GetProperty("name").GetString() == "demo");
        Assert.Equal(["fetch", "clean", "enrich", "merge", "report"], demo.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("name").GetString()));
        Assert.Contains(demo.GetProperty("edges").EnumerateArray(), e => e.GetProperty("from").GetString() == "fetch" && e.GetProperty("to").GetString() == "clean");
        Assert.Equal(["clean", "enrich"], demo.GetProperty("levels")[1].EnumerateArray().Select(s => s.GetString()).Order());
    }

    [Fact]
    public async Task Should_start_a_pipeline_and_report_its_status_steps_and_attempts()
    {
        var id = await Http.StartAsync("demo", new { delayMs = 5, progressTicks = 1, flakyStep = "clean" });
        var status = await Http.WaitForEndAsync(id);
        Assert.Equal("Completed", status.GetProperty("status").GetString());
        Assert.Equal("demo", status.GetProperty("definition").GetString());
        var clean = status.GetProperty("steps").EnumerateArray().Single(s => s.GetProperty("name").GetString() == "clean");
        Assert.Equal("Completed", clean.GetProperty("status").GetString());
        Assert.Equal(2, clean.GetProperty("attempts").GetInt32());
        Assert.True(status.GetProperty("finishedAt").ValueKind == JsonValueKind.String);
    }

    [Fact]
    public async Task Should_give_the_same_pipeline_for_the_same_idempotency_key_and_body_and_409_for_another_body()
    {
        var key = Guid.NewGuid().ToString();
        var first = await Http.StartAsync("wordcount", new { texts = new[] { "a b" } }, idempotencyKey: key);
        var again = await Http.StartAsync("wordcount", new { texts = new[] { "a b" } }, idempotencyKey: key);
        Assert.Equal(first, again);

        using var conflict = await Http.StartRawAsync("wordcount", new { texts = new[] { "other" } }, idempotencyKey: key);
        var (status, code, _) = await conflict.ProblemAsync();
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Equal("idempotency_key_reused", code);

        var other = await Http.StartAsync("wordcount", new { texts = new[] { "a b" } }, idempotencyKey: Guid.NewGuid().ToString());
        Assert.NotEqual(first, other);
    }

    [Fact]
    public async Task Should_cancel_a_running_pipeline_and_refuse_to_cancel_a_finished_one()
    {
        var id = await Http.StartAsync("hold");
        using (var cancel = await Http.PostAsync($"/api/pipelines/{id}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        }

        var status = await Http.WaitForEndAsync(id);
        Assert.Equal("Cancelled", status.GetProperty("status").GetString());

        using var again = await Http.PostAsync($"/api/pipelines/{id}/cancel", null);
        var (code, name, _) = await again.ProblemAsync();
        Assert.Equal(HttpStatusCode.Conflict, code);
        Assert.Equal("pipeline_finished", name);
    }

    [Fact]
    public async Task Should_answer_a_suspension_idempotently_and_refuse_a_second_different_answer()
    {
        var id = await Http.StartAsync("approval", new { title = "post" });
        var suspendId = await WaitForSuspensionAsync(id);

        const string key = "answer-1";
        using (var answer = await Http.PostJsonAsync($"/api/pipelines/{id}/actions/{suspendId}", """{"approved":true}""", key))
        {
            Assert.Equal(HttpStatusCode.Accepted, answer.StatusCode);
        }

        using (var repeat = await Http.PostJsonAsync($"/api/pipelines/{id}/actions/{suspendId}", """{"approved":true}""", key))
        {
            Assert.Equal(HttpStatusCode.Accepted, repeat.StatusCode);
        }

        var status = await Http.WaitForEndAsync(id);
        Assert.Equal("Completed", status.GetProperty("status").GetString());

        using (var repeatAfterEnd = await Http.PostJsonAsync($"/api/pipelines/{id}/actions/{suspendId}", """{"approved":true}""", key))
        {
            Assert.Equal(HttpStatusCode.Accepted, repeatAfterEnd.StatusCode);
        }

        using var different = await Http.PostJsonAsync($"/api/pipelines/{id}/actions/{suspendId}", """{"approved":false}""", "answer-2");
        var (code, name, _) = await different.ProblemAsync();
        Assert.Equal(HttpStatusCode.Conflict, code);
        Assert.Equal("suspension_closed", name);

        using var unknown = await Http.PostJsonAsync($"/api/pipelines/{id}/actions/{Guid.NewGuid()}", """{"approved":true}""");
        Assert.Equal((HttpStatusCode.NotFound, "suspension_not_found"), await CodeOf(unknown));
    }

    [Fact]
    public async Task Should_long_poll_events_in_seq_order_and_wait_for_new_ones()
    {
        var id = await Http.StartAsync("ticker", new { ticks = 5, delayMs = 60 });
        var seen = new List<long>();
        var next = 0L;
        var polls = 0;
        while (true)
        {
            polls++;
            var page = await Http.GetJsonAsync($"/api/pipelines/{id}/events?after={next}&limit=3&waitMs=5000");
            var events = page.GetProperty("events").EnumerateArray().ToList();
            Assert.NotEmpty(events);
            seen.AddRange(events.Select(e => e.Seq()));
            next = page.GetProperty("next").GetInt64();
            Assert.Equal(seen[^1], next);
            if (events.Any(e => e.IsTerminal()))
            {
                break;
            }
        }

        Assert.Equal(Enumerable.Range(1, seen.Count).Select(i => (long)i), seen);
        Assert.True(polls > 2);

        // Nothing newer: waits about waitMs, then answers with no events and the same next.
        var started = DateTime.UtcNow;
        var empty = await Http.GetJsonAsync($"/api/pipelines/{id}/events?after={next}&waitMs=300");
        Assert.Empty(empty.GetProperty("events").EnumerateArray());
        Assert.Equal(next, empty.GetProperty("next").GetInt64());
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(250));
    }

    [Fact]
    public async Task Should_stream_server_sent_events_and_resume_from_Last_Event_ID()
    {
        var id = await Http.StartAsync("ticker", new { ticks = 4, delayMs = 20 });
        var all = await ReadStreamAsync($"/api/pipelines/{id}/stream", lastEventId: null);
        Assert.Equal(Enumerable.Range(1, all.Count).Select(i => (long)i), all.Select(e => e.Id));
        Assert.Equal("PipelineCompleted", all[^1].Type);
        Assert.All(all, e => Assert.Equal(e.Type, JsonDocument.Parse(e.Data).RootElement.Type()));

        // An EventSource reconnects with its original URL and the last id it saw: the later one wins.
        var reconnected = await ReadStreamAsync($"/api/pipelines/{id}/stream?after=1", lastEventId: "4");
        Assert.Equal(all.Skip(4).Select(e => e.Id), reconnected.Select(e => e.Id));

        // A type filter still ends the stream with the final event.
        var filtered = await ReadStreamAsync($"/api/pipelines/{id}/stream?eventTypes=StepProgress", lastEventId: null);
        Assert.Equal(["StepProgress", "PipelineCompleted"], filtered.Select(e => e.Type).Distinct());
        using (var unknownType = await Http.GetAsync($"/api/pipelines/{id}/stream?eventTypes=Nope"))
        {
            Assert.Equal((HttpStatusCode.BadRequest, "unknown_event_type"), await CodeOf(unknownType));
        }

        var resumed = await ReadStreamAsync($"/api/pipelines/{id}/stream", lastEventId: "3");
        Assert.Equal(all.Skip(3).Select(e => e.Id), resumed.Select(e => e.Id));
        var byQuery = await ReadStreamAsync($"/api/pipelines/{id}/stream?after=5", lastEventId: null);
        Assert.Equal(all.Skip(5).Select(e => e.Id), byQuery.Select(e => e.Id));

        // A pipeline's events all carry its tags: one whose tags do not match the filter has nothing to send.
        using (var untagged = await Http.GetAsync($"/api/pipelines/{id}/stream?tag=run=x"))
        {
            Assert.Equal(HttpStatusCode.NoContent, untagged.StatusCode);
        }

        // Finished and fully seen: 204, so EventSource stops reconnecting.
        using var done = await Http.GetAsync($"/api/pipelines/{id}/stream?after={all[^1].Id}");
        Assert.Equal(HttpStatusCode.NoContent, done.StatusCode);
    }

    [Fact]
    public async Task Should_stream_every_pipeline_by_position_filtered_by_tags_and_types_and_resume_from_Last_Event_ID()
    {
        var run = Guid.NewGuid().ToString();
        var from = (await Http.GetJsonAsync("/api/pipelines?limit=1")).GetProperty("position").GetInt64();
        await Http.StartAsync("ticker", new { ticks = 1, delayMs = 5 }, new() { ["run"] = "other" });
        Guid[] ids = [await Http.StartAsync("ticker", new { ticks = 2, delayMs = 5 }, new() { ["run"] = run }), await Http.StartAsync("ticker", new { ticks = 2, delayMs = 5 }, new() { ["run"] = run })];
        foreach (var id in ids)
        {
            await Http.WaitForEndAsync(id);
        }

        // The stream does not end with a pipeline: read until both finals came.
        var all = await ReadStreamAsync($"/api/stream?after={from}&tag=run={run}", lastEventId: null, until: e => e.Count(x => x.Type == "PipelineCompleted") == 2);
        Assert.Equal(ids.Order(), all.Select(e => JsonDocument.Parse(e.Data).RootElement.GetProperty("pipelineId").GetGuid()).Distinct().Order());
        Assert.All(all, e => Assert.Equal(e.Id, JsonDocument.Parse(e.Data).RootElement.GetProperty("position").GetInt64()));
        Assert.Equal(all.Select(e => e.Id).Order(), all.Select(e => e.Id));
        Assert.Equal(all.Count, all.Select(e => e.Id).Distinct().Count());
        foreach (var id in ids)
        {
            var seqs = all.Select(e => JsonDocument.Parse(e.Data).RootElement).Where(e => e.GetProperty("pipelineId").GetGuid() == id).Select(e => e.GetProperty("seq").GetInt64());
            Assert.Equal(Enumerable.Range(1, seqs.Count()).Select(i => (long)i), seqs);
        }

        // An EventSource reconnects with its original URL and the last id it saw (a position): the later one wins.
        var resumed = await ReadStreamAsync($"/api/stream?after={from}&tag=run={run}", lastEventId: all[2].Id.ToString(System.Globalization.CultureInfo.InvariantCulture), until: e => e.Count(x => x.Type == "PipelineCompleted") == 2);
        Assert.Equal(all.Skip(3).Select(e => e.Id), resumed.Select(e => e.Id));

        // A type filter sends only those types: no final event is added for every pipeline.
        var finals = await ReadStreamAsync($"/api/stream?after={from}&tag=run={run}&eventTypes=PipelineCompleted", lastEventId: null, until: e => e.Count == 2);
        Assert.Equal(all.Where(e => e.Type == "PipelineCompleted").Select(e => e.Id), finals.Select(e => e.Id));

        foreach (var (query, code) in new[] { ("tag=run", "invalid_query"), ("tag=a=1&tag=a=2", "invalid_query"), ("eventTypes=Nope", "unknown_event_type"), ("after=-1", "invalid_query"), ($"after={long.MaxValue}", "after_out_of_range") })
        {
            using var refused = await Http.GetAsync($"/api/stream?{query}");
            Assert.Equal((HttpStatusCode.BadRequest, code), await CodeOf(refused));
        }
    }

    [Fact]
    public async Task Should_report_health_and_metrics()
    {
        using var live = await Http.GetAsync("/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        using var ready = await Http.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);

        var id = await Http.StartAsync("ticker", new { ticks = 2, delayMs = 0 });
        await using var ws = await WsClient.ConnectAsync(fixture.Server.WebSocketUri());
        await ws.SubscribeAsync(id.ToString(), after: 0);
        await ws.ReceiveUntilAsync(e => e.IsTerminal());
        var metrics = await Http.GetJsonAsync("/api/metrics");
        Assert.True(metrics.GetProperty("connections").GetInt64() >= 1);
        Assert.True(metrics.GetProperty("eventsOut").GetInt64() >= 4);
        Assert.True(metrics.GetProperty("eventsIn").GetInt64() >= 4);
        Assert.True(metrics.GetProperty("bytesOut").GetInt64() > 0);
    }

    [Fact]
    public async Task Should_answer_bad_requests_with_problem_details_and_change_nothing()
    {
        using (var notJson = await Http.PostJsonAsync("/api/pipelines", "{not json"))
        {
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_json"), await CodeOf(notJson));
        }

        using (var unknown = await Http.StartRawAsync("no-such-pipeline"))
        {
            Assert.Equal((HttpStatusCode.UnprocessableEntity, "unknown_definition"), await CodeOf(unknown));
        }

        using (var wrongKind = await Http.StartRawAsync("wordcount", new { texts = "not a list" }))
        {
            var (status, code, body) = await wrongKind.ProblemAsync();
            Assert.Equal((HttpStatusCode.UnprocessableEntity, "invalid_input"), (status, code));
            Assert.Contains("'texts' must be array, not string", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }

        using (var noInput = await Http.StartRawAsync("wordcount"))
        {
            Assert.Equal((HttpStatusCode.UnprocessableEntity, "invalid_input"), await CodeOf(noInput));
        }

        using (var missing = await Http.PostJsonAsync("/api/pipelines", """{"input":{}}"""))
        {
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_body"), await CodeOf(missing));
        }

        using (var badTags = await Http.PostJsonAsync("/api/pipelines", """{"definition":"demo","tags":{"a":1}}"""))
        {
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_tags"), await CodeOf(badTags));
        }

        using (var badId = await Http.GetAsync("/api/pipelines/not-a-uuid"))
        {
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_pipeline_id"), await CodeOf(badId));
        }

        using (var none = await Http.GetAsync($"/api/pipelines/{Guid.NewGuid()}"))
        {
            Assert.Equal((HttpStatusCode.NotFound, "pipeline_not_found"), await CodeOf(none));
        }

        using (var badQuery = await Http.GetAsync($"/api/pipelines/{Guid.NewGuid()}/events?limit=0"))
        {
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_query"), await CodeOf(badQuery));
        }

        // Nothing was started by any of it.
        var listed = (await Http.GetJsonAsync("/api/pipelines?limit=500")).GetProperty("pipelines").GetArrayLength();
        using (var again = await Http.StartRawAsync("wordcount", new { texts = 3 }))
        {
            Assert.Equal(HttpStatusCode.UnprocessableEntity, again.StatusCode);
        }

        Assert.Equal(listed, (await Http.GetJsonAsync("/api/pipelines?limit=500")).GetProperty("pipelines").GetArrayLength());

        // Still serving.
        var id = await Http.StartAsync("wordcount", new { texts = new[] { "x" } });
        Assert.Equal("Completed", (await Http.WaitForEndAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Should_refuse_tags_and_inputs_over_their_limits_naming_the_setting_and_start_nothing()
    {
        var before = (await Http.GetJsonAsync("/api/pipelines?limit=500")).GetProperty("pipelines").GetArrayLength();
        var tooMany = Enumerable.Range(0, 33).ToDictionary(i => $"k{i}", i => "v");
        var cases = new (object Body, string Setting)[]
        {
            (new { definition = "demo", input = new { delayMs = 0 }, tags = tooMany }, "BusFlow:Edge:MaxTags"),
            (new { definition = "demo", input = new { delayMs = 0 }, tags = new Dictionary<string, string> { [new string('k', 65)] = "v" } }, "BusFlow:Edge:MaxTagKeyLength"),
            (new { definition = "demo", input = new { delayMs = 0 }, tags = new Dictionary<string, string> { ["k"] = new string('v', 257) } }, "BusFlow:Edge:MaxTagValueLength"),
            (new { definition = "demo", input = new { delayMs = 0, note = new string('x', 300 * 1024) } }, "BusFlow:Edge:MaxInputBytes"),
        };
        foreach (var (body, setting) in cases)
        {
            using var refused = await Http.PostAsJsonAsync("/api/pipelines", body);
            var (status, code, problem) = await refused.ProblemAsync();
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(setting == "BusFlow:Edge:MaxInputBytes" ? "input_too_large" : "tags_too_large", code);
            Assert.Contains(setting, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }

        Assert.Equal(before, (await Http.GetJsonAsync("/api/pipelines?limit=500")).GetProperty("pipelines").GetArrayLength());

        // At the limits exactly: started.
        var most = Enumerable.Range(0, 32).ToDictionary(i => $"{i:D2}" + new string('k', 62), _ => new string('v', 256));
        using var accepted = await Http.PostAsJsonAsync("/api/pipelines", new { definition = "demo", input = new { delayMs = 0 }, tags = most });
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
    }

    [Fact]
    public async Task Should_refuse_strings_that_are_not_unicode_with_400_and_store_nothing()
    {
        var before = (await Http.GetJsonAsync("/api/pipelines?limit=200")).GetProperty("pipelines").GetArrayLength();
        foreach (var body in new[]
        {
            """{"definition":"demo","input":{"note":"\udc00"}}""",
            """{"definition":"demo","input":{},"tags":{"k":"a\ud800b"}}""",
            """{"definition":"demo","input":{"\udfff":1}}""",
        })
        {
            using var refused = await Http.PostJsonAsync("/api/pipelines", body);
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_string"), await CodeOf(refused));
        }

        // Bytes that are not UTF-8 inside a string: refused, not stored with the bytes replaced.
        var bytes = Encoding.UTF8.GetBytes("""{"definition":"demo","input":{"note":"a?b"}}""");
        bytes[Array.IndexOf(bytes, (byte)'?')] = 0xFF;
        using (var content = new ByteArrayContent(bytes))
        {
            content.Headers.ContentType = new("application/json");
            using var refused = await Http.PostAsync("/api/pipelines", content);
            Assert.Equal((HttpStatusCode.BadRequest, "invalid_string"), await CodeOf(refused));
        }

        // A surrogate pair written as escapes is ordinary text.
        using (var accepted = await Http.PostJsonAsync("/api/pipelines", """{"definition":"demo","input":{"delayMs":0,"note":"\ud83d\ude00"}}"""))
        {
            Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        }

        Assert.Equal(before + 1, (await Http.GetJsonAsync("/api/pipelines?limit=200")).GetProperty("pipelines").GetArrayLength());
    }

    /// <summary>
    /// A chunked body gives no length up front. The edge must refuse it once it passes 1 MiB, without
    /// waiting for (and buffering) the rest: this client sends 1.5 MiB and then never ends the body.
    /// </summary>
    [Fact]
    public async Task Should_refuse_a_chunked_body_as_soon_as_it_passes_the_limit()
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(fixture.Server.BaseUri.Host, fixture.Server.BaseUri.Port);
        var stream = tcp.GetStream();
        var head = $"POST /api/pipelines HTTP/1.1\r\nHost: {fixture.Server.BaseUri.Authority}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(head));
        var piece = new byte[64 * 1024];
        Array.Fill(piece, (byte)' ');
        var chunkHeader = System.Text.Encoding.ASCII.GetBytes($"{piece.Length:x}\r\n");
        for (var sent = 0; sent < 1536 * 1024; sent += piece.Length)
        {
            await stream.WriteAsync(chunkHeader);
            await stream.WriteAsync(piece);
            await stream.WriteAsync("\r\n"u8.ToArray());
        }

        using var answer = new StreamReader(stream, System.Text.Encoding.ASCII);
        var statusLine = await answer.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.StartsWith("HTTP/1.1 413", statusLine, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Should_refuse_requests_from_pages_of_other_origins()
    {
        using var foreign = new HttpRequestMessage(HttpMethod.Post, "/api/pipelines")
        {
            Content = new StringContent("""{"definition":"wordcount","input":{"texts":["x"]}}""", System.Text.Encoding.UTF8, "text/plain"),
        };
        foreign.Headers.Add("Origin", "https://evil.example");
        using var refused = await Http.SendAsync(foreign);
        Assert.Equal((HttpStatusCode.Forbidden, "origin_not_allowed"), await CodeOf(refused));

        using var own = new HttpRequestMessage(HttpMethod.Post, "/api/pipelines")
        {
            Content = new StringContent("""{"definition":"wordcount","input":{"texts":["x"]}}""", System.Text.Encoding.UTF8, "application/json"),
        };
        own.Headers.Add("Origin", fixture.Server.BaseUri.GetLeftPart(UriPartial.Authority));
        using var accepted = await Http.SendAsync(own);
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);

        // Streams too: a foreign page cannot read a pipeline's events through EventSource.
        var id = (await accepted.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pipelineId").GetGuid();
        using var stream = new HttpRequestMessage(HttpMethod.Get, $"/api/pipelines/{id}/stream");
        stream.Headers.Add("Origin", "https://evil.example");
        using var streamRefused = await Http.SendAsync(stream);
        Assert.Equal((HttpStatusCode.Forbidden, "origin_not_allowed"), await CodeOf(streamRefused));
    }

    private static async Task<(HttpStatusCode, string?)> CodeOf(HttpResponseMessage response)
    {
        var (status, code, _) = await response.ProblemAsync();
        return (status, code);
    }

    private async Task<Guid> WaitForSuspensionAsync(Guid id)
    {
        for (var i = 0; i < 200; i++)
        {
            var status = await Http.GetJsonAsync($"/api/pipelines/{id}");
            foreach (var step in status.GetProperty("steps").EnumerateArray())
            {
                foreach (var item in step.GetProperty("items").EnumerateArray())
                {
                    if (item.GetProperty("suspendId").ValueKind == JsonValueKind.String && item.GetProperty("status").GetString() == "Suspended")
                    {
                        return item.GetProperty("suspendId").GetGuid();
                    }
                }
            }

            await Task.Delay(50);
        }

        throw new TimeoutException("no suspension");
    }

    private sealed record SseEvent(long Id, string Type, string Data);

    /// <summary>The stream's events until it ends, or until <paramref name="until"/> holds (a stream of every pipeline does not end).</summary>
    private async Task<List<SseEvent>> ReadStreamAsync(string path, string? lastEventId, Func<List<SseEvent>, bool>? until = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<SseEvent>();
        long id = 0;
        string type = "", data = "";
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.StartsWith("id: ", StringComparison.Ordinal))
            {
                id = long.Parse(line[4..], System.Globalization.CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                type = line[7..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                data = line[6..];
            }
            else if (line.Length == 0 && data.Length > 0)
            {
                events.Add(new SseEvent(id, type, data));
                data = "";
                if (until?.Invoke(events) == true)
                {
                    break;
                }
            }
        }

        return events;
    }
}
