using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Npgsql;

namespace BusFlow.Chaos;

/// <summary>
/// The RabbitMQ and PostgreSQL that tests/run.sh started: a virtual host and a database of the run's
/// own, and the commands that stop and start the servers themselves (tests/rabbitmqctl.sh,
/// tests/postgresctl.sh).
/// </summary>
public sealed class ChaosServers : IAsyncDisposable
{
    private readonly HttpClient _management;

    private ChaosServers(HttpClient management, string name)
    {
        _management = management;
        VirtualHost = name;
        Database = name.Replace('-', '_');
    }

    public string VirtualHost { get; }

    public string Database { get; }

    public static Uri Broker => new(Required("BUSFLOW_TEST_RABBITMQ"));

    public string ConnectionString => $"{Required("BUSFLOW_TEST_POSTGRES")};Database={Database}";

    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "BusFlow.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("BusFlow.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Creates the run's virtual host and database.</summary>
    public static async Task<ChaosServers> Create(string run)
    {
        var (user, password) = Credentials();
        var port = int.Parse(Environment.GetEnvironmentVariable("BUSFLOW_RABBITMQ_MANAGEMENT_PORT") ?? "15672", CultureInfo.InvariantCulture);
        var http = new HttpClient { BaseAddress = new Uri($"http://{Broker.Host}:{port}/api/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        var servers = new ChaosServers(http, "busflow-chaos-" + run);
        (await http.PutAsync($"vhosts/{servers.VirtualHost}", null)).EnsureSuccessStatusCode();
        using var permissions = new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json");
        (await http.PutAsync($"permissions/{servers.VirtualHost}/{Uri.EscapeDataString(user)}", permissions)).EnsureSuccessStatusCode();
        await using var admin = new NpgsqlConnection(Required("BUSFLOW_TEST_POSTGRES") + ";Database=postgres");
        await admin.OpenAsync();
        await using var create = new NpgsqlCommand($"CREATE DATABASE {servers.Database}", admin);
        await create.ExecuteNonQueryAsync();
        return servers;
    }

    /// <summary>What points a BusFlow.Host process at the run's virtual host and database.</summary>
    public Dictionary<string, string?> HostSettings()
    {
        var (user, password) = Credentials();
        return new()
        {
            ["BusFlow:Transport"] = "RabbitMq",
            ["BusFlow:RabbitMq:Host"] = Broker.Host,
            ["BusFlow:RabbitMq:Port"] = Broker.Port.ToString(CultureInfo.InvariantCulture),
            ["BusFlow:RabbitMq:VirtualHost"] = VirtualHost,
            ["BusFlow:RabbitMq:Username"] = user,
            ["BusFlow:RabbitMq:Password"] = password,
            ["BusFlow:Store:Provider"] = "Postgres",
            ["BusFlow:Store:ConnectionString"] = ConnectionString,
        };
    }

    /// <summary>Stops the broker's application (every connection drops; queues and messages stay) and starts it after <paramref name="down"/>.</summary>
    public static async Task RestartRabbitMqAsync(TimeSpan down, CancellationToken cancellationToken)
    {
        await RunAsync(Required("BUSFLOW_RABBITMQCTL"), "stop_app");
        await Task.Delay(down, cancellationToken);
        await RunAsync(Required("BUSFLOW_RABBITMQCTL"), "start_app");
    }

    /// <summary>PostgreSQL's immediate shutdown (no checkpoint: crash recovery at the next start), started again after <paramref name="down"/>.</summary>
    public static async Task RestartPostgresAsync(TimeSpan down, CancellationToken cancellationToken)
    {
        await RunAsync(Required("BUSFLOW_POSTGRESCTL"), "stop-immediate");
        await Task.Delay(down, cancellationToken);
        await RunAsync(Required("BUSFLOW_POSTGRESCTL"), "start");
    }

    private static async Task RunAsync(string command, string argument)
    {
        // Ahead of the load in the queue for the two cores: under it, each rabbitmqctl took 45-120 s
        // to boot its Erlang VM and reach the node at normal priority.
        using var process = Process.Start(new ProcessStartInfo("nice", ["-n", "-15", command, argument]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{command} {argument} did not finish within 3 minutes");
        }

        await output;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{command} {argument} exited with {process.ExitCode}: {await error}");
        }
    }

    private static (string User, string Password) Credentials() =>
        (Uri.UnescapeDataString(Broker.UserInfo.Split(':')[0]), Uri.UnescapeDataString(Broker.UserInfo.Split(':')[1]));

    private static string Required(string name) => Environment.GetEnvironmentVariable(name)
        ?? throw new InvalidOperationException($"{name} is not set: run the chaos runner through tests/run.sh or tests/chaos.sh, which start the servers it needs.");

    public async ValueTask DisposeAsync()
    {
        using var _ = await _management.DeleteAsync($"vhosts/{VirtualHost}");
        _management.Dispose();
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(Required("BUSFLOW_TEST_POSTGRES") + ";Database=postgres");
        await admin.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Database} WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }
}
