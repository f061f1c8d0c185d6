using BusFlow.Host.Samples;
using BusFlow.Store;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Edge.Tests.Support;

/// <summary>
/// A real Kestrel on 127.0.0.1 running BusFlow with the edge: saga, sample and test workers, the
/// store (a fresh SQLite file or PostgreSQL database) and the in-memory bus unless settings say otherwise.
/// </summary>
public sealed class EdgeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly TestDatabase? _ownedDatabase;

    private EdgeServer(WebApplication app, TestDatabase? ownedDatabase)
    {
        _app = app;
        _ownedDatabase = ownedDatabase;
        // A node listening on every address is reached through loopback.
        BaseUri = new Uri(app.Urls.First().Replace("://0.0.0.0:", "://127.0.0.1:", StringComparison.Ordinal).Replace("://[::]:", "://127.0.0.1:", StringComparison.Ordinal));
        Http = new HttpClient { BaseAddress = BaseUri, Timeout = TimeSpan.FromSeconds(60) };
    }

    public Uri BaseUri { get; }

    public HttpClient Http { get; }

    public IServiceProvider Services => _app.Services;

    /// <summary>A client of this node that sends <paramref name="apiKey"/> with every request.</summary>
    public HttpClient Client(string apiKey)
    {
        var http = new HttpClient { BaseAddress = BaseUri };
        http.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return http;
    }

    public Uri WebSocketUri(string? query = null) => new($"ws://{BaseUri.Authority}/ws{(query is null ? "" : "?" + query)}");

    public static async Task<EdgeServer> StartAsync(
        Action<EdgeOptions>? edge = null,
        IDictionary<string, string?>? settings = null,
        TestDatabase? database = null,
        Action<WebApplicationBuilder>? host = null)
    {
        var owned = database is null ? await TestDatabase.Create(StoreProviderKind.Sqlite) : null;
        var db = database ?? owned!;
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders().AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(settings ?? new Dictionary<string, string?>());
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        host?.Invoke(builder);
        builder.Services.AddBusFlow(builder.Configuration, busflow =>
        {
            busflow.UseStore(db.Options(o => o.DeliveryPollInterval = TimeSpan.FromMilliseconds(50)));
            SamplePipelines.Register(busflow);
            TestPipelines.Register(busflow);
            busflow.UseEdge(builder.Configuration, edge);
        });
        var app = builder.Build();
        app.MapBusFlowEdge();
        await app.StartAsync();
        return new EdgeServer(app, owned);
    }

    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        if (_ownedDatabase is not null)
        {
            await _ownedDatabase.DisposeAsync();
        }
    }
}

/// <summary>One server per test class (servers are cheap; a class shares one).</summary>
public sealed class EdgeServerFixture : IAsyncLifetime
{
    public EdgeServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await EdgeServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
