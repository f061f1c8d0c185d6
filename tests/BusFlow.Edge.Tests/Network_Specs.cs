using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using BusFlow.Edge.Tests.Support;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace BusFlow.Edge.Tests;

/// <summary>
/// DNS rebinding: a page on an attacker's domain whose name resolves to 127.0.0.1 reaches a local
/// node with auth off, sending the attacker's name as Host and as Origin.
/// </summary>
public sealed class When_a_page_rebinds_its_name_to_a_local_node(EdgeServerFixture fixture) : IClassFixture<EdgeServerFixture>
{
    private Uri BaseUri => fixture.Server.BaseUri;

    [Fact]
    public async Task Should_refuse_every_request_that_names_another_host()
    {
        var attacker = $"attacker.example:{BaseUri.Port}";
        foreach (var (method, path) in new[] { (HttpMethod.Post, "/api/pipelines"), (HttpMethod.Get, "/api/pipelines"), (HttpMethod.Get, "/api/definitions"), (HttpMethod.Get, $"/api/pipelines/{Guid.NewGuid()}/stream") })
        {
            using var response = await SendAsync(method, path, attacker);
            var (status, code, _) = await response.ProblemAsync();
            Assert.Equal((HttpStatusCode.BadRequest, "host_not_allowed"), (status, code));
        }

        Assert.StartsWith("HTTP/1.1 400", await WebSocketUpgradeAsync(attacker), StringComparison.Ordinal);

        // The node's own names still work, Origin and all.
        foreach (var own in new[] { $"localhost:{BaseUri.Port}", $"127.0.0.1:{BaseUri.Port}", $"[::1]:{BaseUri.Port}" })
        {
            using var started = await SendAsync(HttpMethod.Post, "/api/pipelines", own);
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        }

        Assert.StartsWith("HTTP/1.1 101", await WebSocketUpgradeAsync($"localhost:{BaseUri.Port}"), StringComparison.Ordinal);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string host)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Host = host;
        request.Headers.Add("Origin", $"http://{host}");
        if (method == HttpMethod.Post)
        {
            request.Content = JsonContent.Create(new { definition = "wordcount", input = new { texts = new[] { "x" } } });
        }

        return await fixture.Server.Http.SendAsync(request);
    }

    /// <summary>A browser's WebSocket handshake naming <paramref name="host"/>; returns the status line.</summary>
    private async Task<string> WebSocketUpgradeAsync(string host)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(BaseUri.Host, BaseUri.Port);
        var stream = tcp.GetStream();
        var handshake = $"GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(handshake));
        using var reader = new StreamReader(stream, Encoding.ASCII);
        return await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(20)) ?? "";
    }
}

public sealed class When_the_edge_names_the_hosts_it_serves : IAsyncLifetime
{
    private EdgeServer _server = null!;

    public async Task InitializeAsync() => _server = await EdgeServer.StartAsync(o => o.AllowedHosts = ["busflow.example", "*.busflow.example"]);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Theory]
    [InlineData("busflow.example", HttpStatusCode.OK)]
    [InlineData("eu.busflow.example", HttpStatusCode.OK)]
    [InlineData("localhost", HttpStatusCode.BadRequest)]
    [InlineData("busflow.example.attacker.example", HttpStatusCode.BadRequest)]
    public async Task Should_serve_only_those_names(string host, HttpStatusCode expected)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/definitions");
        request.Headers.Host = $"{host}:{_server.BaseUri.Port}";
        using var response = await _server.Http.SendAsync(request);
        Assert.Equal(expected, response.StatusCode);
    }
}

public sealed class When_the_edge_listens_beyond_loopback
{
    [Fact]
    public async Task Should_refuse_to_start_without_auth()
    {
        var error = await Assert.ThrowsAnyAsync<InvalidOperationException>(() => EdgeServer.StartAsync(host: b => b.WebHost.UseUrls("http://0.0.0.0:0")));
        Assert.Contains("refuses to listen on http://0.0.0.0:0 without authentication", error.Message, StringComparison.Ordinal);
        Assert.Contains("BusFlow:Edge:Auth:AllowAnonymousNetworkAccess", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Should_start_with_auth_or_when_told_to_serve_anyone()
    {
        await using (var withKeys = await EdgeServer.StartAsync(o => o.Auth.ApiKeys["key-a"] = "tenant-a", host: b => b.WebHost.UseUrls("http://0.0.0.0:0")))
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/definitions");
            request.Headers.Add("X-Api-Key", "key-a");
            // Listening on the network with no AllowedHosts: reached by whatever name.
            request.Headers.Host = $"busflow.internal:{withKeys.BaseUri.Port}";
            using var response = await withKeys.Http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await using var anonymous = await EdgeServer.StartAsync(o => o.Auth.AllowAnonymousNetworkAccess = true, host: b => b.WebHost.UseUrls("http://0.0.0.0:0"));
        using var open = await anonymous.Http.GetAsync("/api/definitions");
        Assert.Equal(HttpStatusCode.OK, open.StatusCode);
    }

    [Fact]
    public async Task Should_stop_and_serve_nothing_when_a_listener_set_up_in_code_goes_around_the_check()
    {
        await using var server = await EdgeServer.StartAsync(host: b => b.WebHost.ConfigureKestrel(k => k.ListenAnyIP(0)));
        var lifetime = server.Services.GetRequiredService<IHostApplicationLifetime>();
        using var refused = await server.Http.GetAsync("/api/definitions");
        var (status, code, _) = await refused.ProblemAsync();
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "insecure_listener"), (status, code));
        await Task.Delay(Timeout.Infinite, lifetime.ApplicationStopping).WaitAsync(TimeSpan.FromSeconds(20)).ContinueWith(_ => { }, TaskScheduler.Default);
        Assert.True(lifetime.ApplicationStopping.IsCancellationRequested);
    }
}
