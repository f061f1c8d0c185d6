using System.Globalization;
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

/// <summary>The benchmarks' fresh RabbitMQ virtual host: <see cref="RabbitMqVirtualHost"/> on <see cref="BenchServers"/>' broker.</summary>
public static class BenchVirtualHost
{
    public static Task<RabbitMqVirtualHost> Create() => RabbitMqVirtualHost.Create(BenchServers.RabbitMq, BenchServers.RabbitMqManagementPort, "busflow-bench-");
}
