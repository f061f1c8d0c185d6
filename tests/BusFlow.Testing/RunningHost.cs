using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace BusFlow.Testing;

/// <summary>
/// BusFlow.Host started the way the README says (<c>dotnet run --project src/BusFlow.Host</c>, here with
/// <c>--no-build</c> because the test run built it), as a separate process on a port of its own,
/// with its own SQLite file unless settings say otherwise. Can be killed and started again on the same port.
/// </summary>
public sealed class RunningHost : IAsyncDisposable
{
    private readonly Dictionary<string, string?> _settings;
    private readonly string _workingDirectory;
    private readonly List<string> _output = [];
    private Process? _process;

    private RunningHost(Dictionary<string, string?> settings, int port, string workingDirectory)
    {
        _settings = settings;
        _workingDirectory = workingDirectory;
        BaseUri = new Uri($"http://127.0.0.1:{port}");
        Http = new HttpClient { BaseAddress = BaseUri, Timeout = TimeSpan.FromSeconds(60) };
    }

    public Uri BaseUri { get; }

    public HttpClient Http { get; }

    public Uri WebSocketUri => new($"ws://{BaseUri.Authority}/ws");

    /// <summary>The settings the next <see cref="StartAgainAsync"/> starts the process with (change them to deploy another configuration).</summary>
    public IDictionary<string, string?> Settings => _settings;

    /// <summary>The store's connection string the host runs with (its own SQLite file unless settings said otherwise).</summary>
    public string StoreConnectionString => _settings["BusFlow:Store:ConnectionString"]!;

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

    public string Output
    {
        get
        {
            lock (_output)
            {
                return string.Join('\n', _output.TakeLast(80));
            }
        }
    }

    /// <summary>Starts a host; without a store setting it gets a fresh SQLite file in a temporary working directory.</summary>
    public static async Task<RunningHost> StartAsync(Dictionary<string, string?>? settings = null)
    {
        var workingDirectory = Directory.CreateTempSubdirectory("busflow-host-").FullName;
        settings ??= [];
        settings.TryAdd("BusFlow:Store:ConnectionString", $"Data Source={Path.Combine(workingDirectory, "busflow.db")}");
        var host = new RunningHost(settings, FreePort(), workingDirectory);
        await host.StartAgainAsync();
        return host;
    }

    /// <summary>Starts the process (again) on the same port with the same settings and database.</summary>
    public async Task StartAgainAsync()
    {
        var project = Path.Combine(RepositoryRoot, "src", "BusFlow.Host");
        var start = new ProcessStartInfo("dotnet", ["run", "--no-build", "--project", project, "--", "--urls", BaseUri.ToString()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _workingDirectory,
        };
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["Logging__LogLevel__BusFlow.Host"] = "Information";
        foreach (var (key, value) in _settings)
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => Record(e.Data);
        process.ErrorDataReceived += (_, e) => Record(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            if (process.HasExited)
            {
                // Until the redirected output is read to its end: its last lines say why.
                process.WaitForExit();
                throw new InvalidOperationException($"BusFlow.Host exited with {process.ExitCode}:\n{Output}");
            }

            try
            {
                using var ready = await Http.GetAsync("/health/ready");
                if (ready.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"BusFlow.Host not ready:\n{Output}");
            }

            await Task.Delay(200);
        }
    }

    /// <summary>SIGKILL, no goodbye.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    private void Record(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.Add(line);
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await KillAsync();
        _process?.Dispose();
        try
        {
            Directory.Delete(_workingDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>One host process per test class.</summary>
public sealed class RunningHostFixture : IAsyncLifetime
{
    public RunningHost Host { get; private set; } = null!;

    public async Task InitializeAsync() => Host = await RunningHost.StartAsync();

    public async Task DisposeAsync() => await Host.DisposeAsync();
}
