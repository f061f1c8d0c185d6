using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Security.Claims;
using System.Text;
using BusFlow.Edge.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace BusFlow.Edge.Tests;

/// <summary>API keys and JWT map callers to tenants; another tenant's pipeline looks like none at all.</summary>
public sealed class When_tenants_share_an_edge : IAsyncLifetime
{
    private const string SigningKey = "busflow-test-signing-key-at-least-32-bytes!";
    private EdgeServer _server = null!;

    public async Task InitializeAsync() => _server = await EdgeServer.StartAsync(o =>
    {
        o.Auth.ApiKeys["key-a"] = "tenant-a";
        o.Auth.ApiKeys["key-b"] = "tenant-b";
        o.Auth.Jwt.SigningKey = SigningKey;
        o.Auth.Jwt.Issuer = "busflow-tests";
        o.Auth.Jwt.Audience = "busflow";
        o.Auth.Jwt.AllTenantsRole = "busflow-operator";
        o.AllowedOrigins = ["https://allowed.example"];
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private HttpClient Client(string apiKey) => _server.Client(apiKey);

    [Fact]
    public async Task Should_refuse_callers_without_credentials()
    {
        using var anonymous = new HttpClient { BaseAddress = _server.BaseUri };
        using var response = await anonymous.GetAsync("/api/definitions");
        var (status, code, _) = await response.ProblemAsync();
        Assert.Equal((HttpStatusCode.Unauthorized, "unauthorized"), (status, code));

        using var wrongKey = Client("nope");
        using var wrong = await wrongKey.GetAsync("/api/definitions");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);

        var refused = await Assert.ThrowsAsync<WebSocketException>(() => WsClient.ConnectAsync(_server.WebSocketUri()));
        Assert.Contains("401", refused.Message, StringComparison.Ordinal);

        // Health stays open for probes.
        using var health = await anonymous.GetAsync("/health/live");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task Should_hide_another_tenants_pipeline_exactly_like_a_missing_one()
    {
        using var a = Client("key-a");
        using var b = Client("key-b");
        var id = await a.StartAsync("approval", new { title = "secret" });
        var status = await a.GetJsonAsync($"/api/pipelines/{id}");
        Assert.Equal("tenant-a", status.GetProperty("tags").GetProperty("tenant").GetString());

        var missing = Guid.NewGuid();
        foreach (var (method, path) in new[]
        {
            (HttpMethod.Get, "/api/pipelines/{0}"),
            (HttpMethod.Post, "/api/pipelines/{0}/cancel"),
            (HttpMethod.Get, "/api/pipelines/{0}/events?after=0"),
            (HttpMethod.Get, "/api/pipelines/{0}/stream"),
            (HttpMethod.Post, $"/api/pipelines/{{0}}/actions/{Guid.NewGuid()}"),
        })
        {
            using var theirs = await b.SendAsync(new HttpRequestMessage(method, string.Format(System.Globalization.CultureInfo.InvariantCulture, path, id)));
            using var none = await b.SendAsync(new HttpRequestMessage(method, string.Format(System.Globalization.CultureInfo.InvariantCulture, path, missing)));
            var (theirStatus, theirCode, theirBody) = await theirs.ProblemAsync();
            var (noneStatus, noneCode, noneBody) = await none.ProblemAsync();
            Assert.Equal(HttpStatusCode.NotFound, theirStatus);
            Assert.Equal((noneStatus, noneCode), (theirStatus, theirCode));
            Assert.Equal(noneBody.GetProperty("title").GetString(), theirBody.GetProperty("title").GetString());
        }

        // Still running: B's cancel did nothing.
        Assert.Equal("Running", (await a.GetJsonAsync($"/api/pipelines/{id}")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Should_send_a_subscriber_only_its_tenants_events()
    {
        using var a = Client("key-a");
        using var b = Client("key-b");
        await using var wsB = await WsClient.ConnectAsync(_server.WebSocketUri(), o => o.SetRequestHeader("X-Api-Key", "key-b"));
        await using var wsA = await WsClient.ConnectAsync(_server.WebSocketUri("access_token=key-a"));
        await wsB.SubscribeAsync("*");
        var theirs = await a.StartAsync("ticker", new { ticks = 3, delayMs = 5 });
        await wsB.SubscribeAsync(theirs.ToString(), after: 0);
        await wsA.SubscribeAsync(theirs.ToString(), after: 0);
        var aSees = await wsA.ReceiveUntilAsync(e => e.IsTerminal());
        Assert.All(aSees, e => Assert.Equal(theirs, e.PipelineId()));

        var mine = await b.StartAsync("ticker", new { ticks = 1, delayMs = 0 });
        var bSees = await wsB.ReceiveUntilAsync(e => e.PipelineId() == mine && e.IsTerminal());
        Assert.All(bSees, e => Assert.Equal(mine, e.PipelineId()));

        // Resuming into another tenant's history is the same as into a pipeline that does not exist.
        await wsB.SendAsync(new { type = "subscribe", pipelineId = theirs.ToString(), after = 2 });
        var error = (await wsB.ReceiveAsync())!.Value;
        Assert.Equal("after_out_of_range", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Should_stream_every_pipeline_over_SSE_with_only_the_callers_tenants_events()
    {
        using var a = Client("key-a");
        using var b = Client("key-b");
        var from = (await b.GetJsonAsync("/api/pipelines?limit=1")).GetProperty("position").GetInt64();
        var theirs = await a.StartAsync("ticker", new { ticks = 2, delayMs = 5 });
        await a.WaitForEndAsync(theirs);
        var mine = await b.StartAsync("ticker", new { ticks = 1, delayMs = 0 });
        await b.WaitForEndAsync(mine);

        using var response = await b.GetAsync($"/api/stream?after={from}", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var seen = new List<System.Text.Json.JsonElement>();
        while (!seen.Any(e => e.PipelineId() == mine && e.IsTerminal()) && await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                seen.Add(System.Text.Json.JsonDocument.Parse(line[6..]).RootElement.Clone());
            }
        }

        Assert.NotEmpty(seen);
        Assert.All(seen, e => Assert.Equal(mine, e.PipelineId()));
    }

    [Fact]
    public async Task Should_accept_a_JWT_bearer_token_and_read_the_tenant_claim()
    {
        using var a = Client("key-a");
        var id = await a.StartAsync("ticker", new { ticks = 1, delayMs = 0 });
        var token = Token("tenant-a");
        using var jwt = new HttpClient { BaseAddress = _server.BaseUri };
        jwt.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        Assert.Equal(id, (await jwt.GetJsonAsync($"/api/pipelines/{id}")).GetProperty("pipelineId").GetGuid());

        jwt.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token("tenant-b"));
        using (var hidden = await jwt.GetAsync($"/api/pipelines/{id}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, hidden.StatusCode);
        }

        jwt.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token[..^4] + "AAAA");
        using (var forged = await jwt.GetAsync($"/api/pipelines/{id}"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, forged.StatusCode);
        }

        await using var ws = await WsClient.ConnectAsync(_server.WebSocketUri("access_token=" + token));
        await ws.SubscribeAsync(id.ToString(), after: 0);
        await ws.ReceiveUntilAsync(e => e.IsTerminal());
    }

    [Fact]
    public async Task Should_refuse_a_tenant_tag_that_is_not_the_callers_and_foreign_origins()
    {
        using var a = Client("key-a");
        using var spoof = await a.StartRawAsync("ticker", new { ticks = 1, delayMs = 0 }, new() { ["tenant"] = "tenant-b" });
        var (status, code, _) = await spoof.ProblemAsync();
        Assert.Equal((HttpStatusCode.BadRequest, "tenant_tag_reserved"), (status, code));

        var foreign = await Assert.ThrowsAsync<WebSocketException>(() => WsClient.ConnectAsync(_server.WebSocketUri("access_token=key-a"), o => o.SetRequestHeader("Origin", "https://evil.example")));
        Assert.Contains("403", foreign.Message, StringComparison.Ordinal);
        await using var allowed = await WsClient.ConnectAsync(_server.WebSocketUri("access_token=key-a"), o => o.SetRequestHeader("Origin", "https://allowed.example"));
        await allowed.SendAsync(new { type = "ping" });
        Assert.Equal("pong", (await allowed.ReceiveAsync())!.Value.Type());
    }

    [Fact]
    public async Task Should_refuse_a_token_without_a_tenant_unless_it_carries_the_operators_role()
    {
        using var a = Client("key-a");
        var id = await a.StartAsync("ticker", new { ticks = 1, delayMs = 0 });
        using var jwt = new HttpClient { BaseAddress = _server.BaseUri };
        foreach (var token in new[] { Token(null), Token(""), Token(null, role: "reader") })
        {
            jwt.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var refused = await jwt.GetAsync($"/api/pipelines/{id}");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            using var list = await jwt.GetAsync("/api/pipelines");
            Assert.Equal(HttpStatusCode.Unauthorized, list.StatusCode);
            var socket = await Assert.ThrowsAsync<WebSocketException>(() => WsClient.ConnectAsync(_server.WebSocketUri("access_token=" + token)));
            Assert.Contains("401", socket.Message, StringComparison.Ordinal);
        }

        // The operators' role (BusFlow:Edge:Auth:Jwt:AllTenantsRole) sees every tenant.
        jwt.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token(null, role: "busflow-operator"));
        Assert.Equal(id, (await jwt.GetJsonAsync($"/api/pipelines/{id}")).GetProperty("pipelineId").GetGuid());
    }

    [Fact]
    public async Task Should_not_start_with_an_authority_but_no_audience()
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(() => EdgeServer.StartAsync(o => o.Auth.Jwt.Authority = "https://login.example"));
        Assert.Contains("BusFlow:Edge:Auth:Jwt:Audience is required with an Authority", error.ToString(), StringComparison.Ordinal);
    }

    private static string Token(string? tenant, string? role = null) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
    {
        Issuer = "busflow-tests",
        Audience = "busflow",
        Subject = new ClaimsIdentity(new[] { new Claim("sub", "user-1") }
            .Concat(tenant is null ? [] : [new Claim("tenant", tenant)])
            .Concat(role is null ? [] : [new Claim("role", role)])),
        Expires = DateTime.UtcNow.AddMinutes(10),
        SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(SigningKey)), SecurityAlgorithms.HmacSha256),
    });
}

/// <summary>Idempotency keys belong to their tenant, whatever characters the tenant's name holds.</summary>
public sealed class When_tenants_use_the_same_idempotency_key
{
    [Fact]
    public async Task Should_start_one_pipeline_per_tenant_and_answer_a_repeat_with_its_own()
    {
        await using var server = await EdgeServer.StartAsync(o =>
        {
            o.Auth.ApiKeys["key-colon"] = "x:y";
            o.Auth.ApiKeys["key-x"] = "x";
        });
        using var colon = server.Client("key-colon");
        using var plain = server.Client("key-x");
        var input = new { delayMs = 0 };

        // Tenant "x:y" with key "z" and tenant "x" with key "y:z" once read as the same "x:y:z".
        var first = await colon.StartAsync("demo", input, idempotencyKey: "z");
        var second = await plain.StartAsync("demo", input, idempotencyKey: "y:z");
        Assert.NotEqual(first, second);

        Assert.Equal(first, await colon.StartAsync("demo", input, idempotencyKey: "z"));
        Assert.Equal(second, await plain.StartAsync("demo", input, idempotencyKey: "y:z"));
    }
}

/// <summary>
/// A tenant's list and catch-up cost what that tenant has, not what the store holds: both are
/// filtered by the tenant in SQL (issue 13).
/// </summary>
public sealed class When_one_tenant_has_far_more_than_another
{
    [Fact]
    public async Task Should_list_and_replay_the_small_tenants_pipelines_from_its_own_rows()
    {
        await using var server = await EdgeServer.StartAsync(o =>
        {
            o.Auth.ApiKeys["key-a"] = "tenant-a";
            o.Auth.ApiKeys["key-b"] = "tenant-b";
        });
        using var a = server.Client("key-a");
        using var b = server.Client("key-b");
        var mine = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            mine.Add(await a.StartAsync("ticker", new { ticks = 1, delayMs = 0 }));
            await a.WaitForEndAsync(mine[^1]);
        }

        // The other tenant's pipelines are newer and many times more.
        var theirs = new List<Guid>();
        for (var i = 0; i < 20; i++)
        {
            theirs.Add(await b.StartAsync("ticker", new { ticks = 10, delayMs = 0 }));
        }

        foreach (var id in theirs)
        {
            await b.WaitForEndAsync(id);
        }

        // The list pages by tenant in SQL: the newest three of its own, though 20 newer are another's.
        var list = await a.GetJsonAsync("/api/pipelines?limit=3");
        Assert.Equal(Enumerable.Reverse(mine), list.GetProperty("pipelines").EnumerateArray().Select(p => p.GetProperty("pipelineId").GetGuid()));

        // Catch-up on * from the start reads the tenant's own rows and no others.
        var metrics = server.Services.GetRequiredService<EdgeMetrics>();
        var readBefore = metrics.RowsReadForReplay;
        await using var ws = await WsClient.ConnectAsync(server.WebSocketUri("access_token=key-a"));
        await ws.SubscribeAsync("*", after: 0);
        var finished = 0;
        var events = await ws.ReceiveUntilAsync(e => e.IsTerminal() && ++finished == mine.Count);
        Assert.All(events, e => Assert.Contains(e.PipelineId(), mine));
        Assert.Equal(events.Count, metrics.RowsReadForReplay - readBefore);
    }
}
