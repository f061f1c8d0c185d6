using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Npgsql;

namespace BusFlow.Testing;

/// <summary>Where the servers are: the same environment variables tests/run.sh sets, with its defaults.</summary>
public static class BenchServers
{
    public static Uri RabbitMq => new(Environment.GetEnvironmentVariable("BUSFLOW_TEST_RABBITMQ") ?? "amqp://guest:guest@127.0.0.1:5672/");

    public static string Postgres => Environment.GetEnvironmentVariable("BUSFLOW_TEST_POSTGRES") ?? "Host=127.0.0.1;Port=55432;Username=postgres";

    public static int RabbitMqManagementPort => int.Parse(Environment.GetEnvironmentVariable("BUSFLOW_RABBITMQ_MANAGEMENT_PORT") ?? "15672", CultureInfo.InvariantCulture);
}

/// <summary>A fresh PostgreSQL database (busflow_bench_&lt;random&gt;), dropped afterwards.</summary>
public sealed class BenchDatabase : IAsyncDisposable
{
    private BenchDatabase(string name, string connectionString)
    {
        Name = name;
        ConnectionString = connectionString;
    }

    public string Name { get; }

    public string ConnectionString { get; }

    public static async Task<BenchDatabase> Create()
    {
        var name = $"busflow_bench_{Guid.NewGuid():N}"[..30];
        await using (var admin = new NpgsqlConnection(BenchServers.Postgres + ";Database=postgres"))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        return new BenchDatabase(name, $"{BenchServers.Postgres};Database={name}");
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(BenchServers.Postgres + ";Database=postgres");
        await admin.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }
}

/// <summary>A fresh RabbitMQ virtual host created through the management API and deleted afterwards (as the integration tests do).</summary>
public sealed class BenchVirtualHost : IAsyncDisposable
{
    private readonly HttpClient _http;

    private BenchVirtualHost(HttpClient http, string name)
    {
        _http = http;
        Name = name;
    }

    public string Name { get; }

    public static async Task<BenchVirtualHost> Create()
    {
        var broker = BenchServers.RabbitMq;
        var (user, password) = Credentials(broker);
        var http = new HttpClient { BaseAddress = new Uri($"http://{broker.Host}:{BenchServers.RabbitMqManagementPort}/api/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        var name = "busflow-bench-" + Guid.NewGuid().ToString("N")[..12];
        (await http.PutAsync(new Uri($"vhosts/{name}", UriKind.Relative), null)).EnsureSuccessStatusCode();
        using var permissions = new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json");
        (await http.PutAsync(new Uri($"permissions/{name}/{Uri.EscapeDataString(user)}", UriKind.Relative), permissions)).EnsureSuccessStatusCode();
        return new BenchVirtualHost(http, name);
    }

    /// <summary>The RabbitMQ server's version, from the management API.</summary>
    public async Task<string> ServerVersion()
    {
        using var overview = System.Text.Json.JsonDocument.Parse(await _http.GetStringAsync(new Uri("overview", UriKind.Relative)));
        return $"RabbitMQ {overview.RootElement.GetProperty("rabbitmq_version").GetString()} (Erlang {overview.RootElement.GetProperty("erlang_version").GetString()})";
    }

    /// <summary>Configuration that points BusFlow at this virtual host.</summary>
    public Dictionary<string, string?> BusFlowSettings()
    {
        var broker = BenchServers.RabbitMq;
        var (user, password) = Credentials(broker);
        return new()
        {
            ["BusFlow:Transport"] = "RabbitMq",
            ["BusFlow:RabbitMq:Host"] = broker.Host,
            ["BusFlow:RabbitMq:Port"] = broker.Port.ToString(CultureInfo.InvariantCulture),
            ["BusFlow:RabbitMq:VirtualHost"] = Name,
            ["BusFlow:RabbitMq:Username"] = user,
            ["BusFlow:RabbitMq:Password"] = password,
        };
    }

    public async ValueTask DisposeAsync()
    {
        using var _ = await _http.DeleteAsync(new Uri($"vhosts/{Name}", UriKind.Relative));
        _http.Dispose();
    }

    private static (string User, string Password) Credentials(Uri broker)
    {
        var parts = broker.UserInfo.Split(':');
        return (Uri.UnescapeDataString(parts[0]), parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "");
    }
}
