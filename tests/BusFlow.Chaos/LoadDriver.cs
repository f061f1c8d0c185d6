using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;

namespace BusFlow.Chaos;

/// <summary>A pipeline the driver started: what it asked for, the id the edge gave, and its subscriber.</summary>
public sealed record StartedPipeline(int Index, string Definition, string Key, Guid Id, Subscriber Watcher)
{
    private int _answers;

    /// <summary>Answers the driver gave its suspensions (approvals), counted when an edge took them.</summary>
    public int Answers => Volatile.Read(ref _answers);

    public void Answered() => Interlocked.Increment(ref _answers);
}

/// <summary>
/// Starts the <c>demo</c>, <c>wordcount</c>, <c>approval</c> and <c>ledger</c> samples at a steady
/// rate through whichever edge serves, each start with an <c>Idempotency-Key</c> and repeated on
/// another edge until one answers; watches each over a WebSocket, SSE or long-poll; answers
/// approvals (some twice, the second time after a pause). Every start carries the tag
/// <c>chaos=&lt;run&gt;</c>.
/// </summary>
public sealed class LoadDriver(string run, Func<RoleProcess> edge, Watchers watchers)
{
    private static readonly string[] Definitions = ["demo", "ledger", "demo", "wordcount", "ledger", "approval"];
    private static readonly string[] Transports = ["websocket", "sse", "long-poll"];
    private readonly ConcurrentBag<Task> _running = [];

    public ConcurrentDictionary<Guid, StartedPipeline> Started { get; } = new();

    /// <summary>Starts that an edge answered with another pipeline id than an earlier answer for the same key.</summary>
    public ConcurrentBag<string> DoubledStarts { get; } = [];

    public int RepeatedStarts => _repeated;

    /// <summary>Starts sent (each with its own key); every one must end in <see cref="Started"/>.</summary>
    public int Sent => Volatile.Read(ref _next);

    private int _repeated;
    private int _next;

    /// <summary>Starts pipelines at <paramref name="rate"/> per second until <paramref name="stop"/>.</summary>
    public async Task RunAsync(double rate, CancellationToken stop, CancellationToken abort)
    {
        var interval = TimeSpan.FromSeconds(1 / rate);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; !stop.IsCancellationRequested; i++)
        {
            _running.Add(StartAndWatchAsync(Interlocked.Increment(ref _next), abort));
            var wait = interval * (i + 1) - clock.Elapsed;
            if (wait > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(wait, stop);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
    }

    /// <summary>What failed in the driver itself (a start, an answer or a subscriber that threw), reported as a broken check rather than ending the run.</summary>
    public ConcurrentBag<string> Errors { get; } = [];

    /// <summary>
    /// Waits for every start, answer and pipeline subscriber to end (they stop at the token RunAsync
    /// was given to abort); one that threw is recorded in <see cref="Errors"/>, a cancelled one is not.
    /// </summary>
    public async Task DrainAsync()
    {
        // Answers are added while the pipelines run: wait until no task is left unfinished.
        while (_running.ToArray() is var tasks && tasks.Any(t => !t.IsCompleted))
        {
            await Task.WhenAll(tasks).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        foreach (var failed in _running.Where(t => t.IsFaulted))
        {
            var ex = failed.Exception!.GetBaseException();
            Errors.Add($"{ex.GetType().Name}: {ex.Message.Split('\n')[0]}");
        }
    }

    /// <summary>A burst of duplicates: the last <paramref name="count"/> starts sent again with their keys (each must answer the same pipeline).</summary>
    public async Task RepeatStartsAsync(int count, CancellationToken cancellationToken)
    {
        foreach (var started in Started.Values.OrderByDescending(s => s.Index).Take(count))
        {
            Interlocked.Increment(ref _repeated);
            var id = await StartAsync(started.Index, started.Definition, started.Key, cancellationToken);
            if (id != started.Id)
            {
                DoubledStarts.Add($"{started.Key}: {started.Id} then {id}");
            }
        }
    }

    private async Task StartAndWatchAsync(int index, CancellationToken cancellationToken)
    {
        var definition = Definitions[index % Definitions.Length];
        var key = $"{run}-{index}";
        var id = await StartAsync(index, definition, key, cancellationToken);
        var subscriber = new Subscriber($"pipeline {index} ({definition})", Transports[index / Definitions.Length % Transports.Length]);
        var started = new StartedPipeline(index, definition, key, id, subscriber);
        if (!Started.TryAdd(id, started))
        {
            DoubledStarts.Add($"{key}: answered with {id}, already the pipeline of {Started[id].Key}");
            return;
        }
        try
        {
            await watchers.WatchPipelineAsync(subscriber, id, e => OnEventAsync(started, e, cancellationToken), cancellationToken);
        }
        catch (Exception ex) when (ex is InvalidOperationException or JsonException)
        {
            subscriber.Failure = ex.Message;
        }
    }

    private async Task OnEventAsync(StartedPipeline started, JsonElement e, CancellationToken cancellationToken)
    {
        if (e.GetProperty("type").GetString() != "StepSuspended")
        {
            return;
        }

        var suspendId = e.GetProperty("suspendId").GetGuid();
        // Every other approval (approvals are every sixth start) is answered twice.
        var twice = started.Index / Definitions.Length % 2 == 0;
        _running.Add(Task.Run(
            async () =>
            {
                await AnswerAsync(started, suspendId, cancellationToken);
                if (twice)
                {
                    // The same answer again later, as a client that did not see the first reply would.
                    await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken);
                    await AnswerAsync(started, suspendId, cancellationToken);
                }
            },
            cancellationToken));
    }

    private async Task AnswerAsync(StartedPipeline started, Guid suspendId, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var status = await SendAsync(HttpMethod.Post, $"/api/pipelines/{started.Id}/actions/{suspendId}", """{"approved":true}""", $"answer-{started.Key}", cancellationToken);
            // 202: taken (again); 409 suspension_closed: the first answer already resumed it and it moved on.
            if (status is { Code: HttpStatusCode.Accepted or HttpStatusCode.Conflict })
            {
                started.Answered();
                return;
            }

            await Task.Delay(500, cancellationToken);
        }
    }

    private async Task<Guid> StartAsync(int index, string definition, string key, CancellationToken cancellationToken)
    {
        var input = definition switch
        {
            "demo" => $$"""{"delayMs":30,"progressTicks":2,"flakyStep":{{(index % 4 == 0 ? "\"merge\"" : "null")}}}""",
            "wordcount" => JsonSerializer.Serialize(new { texts = Enumerable.Range(0, 5 + (index % 10)).Select(i => $"w{i % 3} chaos text {i}").ToArray() }),
            "ledger" => $$"""{"amount":{{1 + (index % 9)}}}""",
            _ => $$"""{"title":"chaos {{index}}"}""",
        };
        var body = $$$"""{"definition":"{{{definition}}}","input":{{{input}}},"tags":{"chaos":"{{{run}}}"}}""";
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var answer = await SendAsync(HttpMethod.Post, "/api/pipelines", body, key, cancellationToken);
            if (answer is { Code: HttpStatusCode.Accepted or HttpStatusCode.OK } ok)
            {
                using var document = JsonDocument.Parse(ok.Body);
                return document.RootElement.GetProperty("pipelineId").GetGuid();
            }

            await Task.Delay(500, cancellationToken);
        }
    }

    /// <summary>One request to a serving edge; null when it could not be reached or did not answer in time.</summary>
    private async Task<(HttpStatusCode Code, string Body)?> SendAsync(HttpMethod method, string path, string body, string key, CancellationToken cancellationToken)
    {
        var node = edge();
        using var http = new HttpClient { BaseAddress = node.BaseUri, Timeout = TimeSpan.FromSeconds(15) };
        using var request = new HttpRequestMessage(method, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("Idempotency-Key", key);
        try
        {
            using var response = await http.SendAsync(request, cancellationToken);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(cancellationToken));
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is HttpRequestException or TaskCanceledException or IOException or System.Net.Sockets.SocketException)
        {
            return null;
        }
    }
}
