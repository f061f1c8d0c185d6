using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace BusFlow.Chaos;

/// <summary>
/// One BusFlow.Host process of a role (<c>edge</c>, <c>saga</c> or <c>worker</c>), started from the
/// host's build output with its settings as environment variables on a port of its own. The runner
/// kills it (SIGKILL), pauses it (SIGSTOP / SIGCONT) and starts it again on the same port.
/// </summary>
public sealed class RoleProcess(string name, string role, Dictionary<string, string?> settings) : IAsyncDisposable
{
    /// <summary>BUSFLOW_CHAOS_LOGS: a folder that keeps every line of every process, stamped, to look into a run (read and made once).</summary>
    private static readonly string? LogFolder = Environment.GetEnvironmentVariable("BUSFLOW_CHAOS_LOGS") is { Length: > 0 } folder
        ? Directory.CreateDirectory(folder).FullName
        : null;

    /// <summary>How long a start may take until <c>/health/ready</c> answers, above the host's BusFlow:StartTimeout set here.</summary>
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(150);

    private readonly Queue<string> _tail = new();
    private Process? _process;

    public string Name { get; } = name;

    public string Role { get; } = role;

    public Uri BaseUri { get; } = new($"http://127.0.0.1:{FreePort()}");

    /// <summary>Ready (its start finished) and not paused: the load may send it requests, a fault may hit it.</summary>
    public bool Serving => _process is { HasExited: false } && !Paused && !Volatile.Read(ref _starting);

    private bool _starting;

    public bool Paused { get; private set; }

    public int Restarts { get; private set; }

    /// <summary>The longest a start took until the process was ready.</summary>
    public TimeSpan SlowestStart { get; private set; }

    /// <summary>The last lines the process wrote (stdout and stderr), for a failure's report.</summary>
    public string Tail
    {
        get
        {
            lock (_tail)
            {
                return string.Join('\n', _tail);
            }
        }
    }

    /// <summary>The last <paramref name="lines"/> lines of <see cref="Tail"/> without stack frames, for a report cut to its end.</summary>
    public string ShortTail(int lines)
    {
        lock (_tail)
        {
            return string.Join('\n', _tail.Where(l => !l.TrimStart().StartsWith("at ", StringComparison.Ordinal) && !l.TrimStart().StartsWith("--- End of", StringComparison.Ordinal)).TakeLast(lines));
        }
    }

    /// <summary>
    /// The host the processes run: <c>BUSFLOW_CHAOS_HOST</c>, a published BusFlow.Host.dll (tests/run.sh
    /// and tests/chaos.sh publish it as docker-compose.yml does: Release, ReadyToRun), or else the
    /// build output of the runner's own configuration.
    /// </summary>
    public static string HostAssembly
    {
        get
        {
            if (Environment.GetEnvironmentVariable("BUSFLOW_CHAOS_HOST") is { Length: > 0 } published)
            {
                return File.Exists(published) ? Path.GetFullPath(published) : throw new FileNotFoundException($"BUSFLOW_CHAOS_HOST names {published}, which does not exist: dotnet publish src/BusFlow.Host -c Release -o <folder>");
            }

            var path = Path.Combine(BusFlow.Testing.BenchMachine.RepositoryRoot, "src", "BusFlow.Host", "bin", Configuration, "net10.0", "BusFlow.Host.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"BusFlow.Host is not built at {path}: dotnet build -c {Configuration} src/BusFlow.Host");
        }
    }

    /// <summary>The runner's own build configuration, whose host build output it runs without BUSFLOW_CHAOS_HOST.</summary>
    private static string Configuration => AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";

    /// <summary>What <see cref="HostAssembly"/> is, for the report; a publish must be ReadyToRun, as docker-compose.yml's is.</summary>
    public static string HostDescription
    {
        get
        {
            if (Environment.GetEnvironmentVariable("BUSFLOW_CHAOS_HOST") is not { Length: > 0 })
            {
                return $"BusFlow.Host's build output ({Configuration})";
            }

            // The host and the largest package it starts: both compiled ahead of time, or the publish lost it.
            var folder = Path.GetDirectoryName(HostAssembly)!;
            var jit = new[] { "BusFlow.Host.dll", "MassTransit.dll", "Microsoft.EntityFrameworkCore.dll" }.Where(f => !IsReadyToRun(Path.Combine(folder, f))).ToList();
            return jit.Count == 0
                ? "BusFlow.Host published (Release, ReadyToRun)"
                : throw new InvalidOperationException($"BUSFLOW_CHAOS_HOST: {string.Join(", ", jit)} in {folder} not ReadyToRun; BusFlow.Host.csproj's PublishReadyToRun is lost");
        }
    }

    private static bool IsReadyToRun(string path)
    {
        using var reader = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(path));
        return reader.PEHeaders.CorHeader is { ManagedNativeHeaderDirectory.Size: > 0 };
    }

    /// <summary>Starts that ended with the process exiting by itself before it was ready (started again, as docker-compose.yml's <c>restart: on-failure</c> does).</summary>
    public int FailedStarts { get; private set; }

    /// <summary>
    /// Starts the process and waits until <c>/health/ready</c> answers 200. A process that exits by
    /// itself before (the host fails fast when its store is unreachable at start, counting on its
    /// supervisor) is started again after a second, as docker-compose.yml's <c>restart: on-failure</c> would.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _starting, true);
        try
        {
            await StartWithRetriesAsync(cancellationToken);
        }
        finally
        {
            Volatile.Write(ref _starting, false);
        }
    }

    private async Task StartWithRetriesAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await StartOnceAsync(cancellationToken);
                return;
            }
            catch (ProcessExitedException) when (attempt < 30)
            {
                FailedStarts++;
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
    }

    private async Task StartOnceAsync(CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("dotnet", [HostAssembly, "--urls", BaseUri.ToString()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetTempPath(),
        };
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        // What a start waits for (the bus connecting, its endpoints ready), in a tail that a start cut off shows.
        start.Environment["Logging__LogLevel__MassTransit"] = "Information";
        start.Environment["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Information";
        // Below ReadyTimeout: a start that waits for good ends the process, which is then started again.
        start.Environment["BusFlow__StartTimeout"] = "00:01:30";
        start.Environment["BusFlow__Roles"] = Role;
        foreach (var (key, value) in settings)
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => Record(e.Data);
        process.ErrorDataReceived += (_, e) => Record(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        Paused = false;
        using var http = new HttpClient { BaseAddress = BaseUri, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + ReadyTimeout;
        while (true)
        {
            if (process.HasExited)
            {
                throw new ProcessExitedException($"{Name} exited with {process.ExitCode}:\n{Tail}");
            }

            try
            {
                using var ready = await http.GetAsync("/health/ready", cancellationToken);
                if (ready.IsSuccessStatusCode)
                {
                    var took = DateTime.UtcNow - (deadline - ReadyTimeout);
                    SlowestStart = took > SlowestStart ? took : SlowestStart;
                    Record($"chaos: ready after {took.TotalSeconds:0.0} s");
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or System.Net.Sockets.SocketException && !cancellationToken.IsCancellationRequested)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{Name} was not ready within {ReadyTimeout.TotalSeconds:0} s:\n{Tail}");
            }

            await Task.Delay(200, cancellationToken);
        }
    }

    /// <summary>SIGKILL: no goodbye, no flush.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        Paused = false;
    }

    /// <summary>Killed and started again on the same port after <paramref name="down"/>.</summary>
    public async Task RestartAsync(TimeSpan down, CancellationToken cancellationToken)
    {
        Volatile.Write(ref _starting, true);
        await KillAsync();
        await Task.Delay(down, cancellationToken);
        Restarts++;
        await StartAsync(cancellationToken);
    }

    public void Pause() => Signal("STOP", paused: true);

    public void Continue() => Signal("CONT", paused: false);

    /// <summary>The process's resident set in bytes (0 when it is not running).</summary>
    public long ResidentBytes()
    {
        try
        {
            if (_process is not { HasExited: false } process)
            {
                return 0;
            }

            var line = File.ReadLines($"/proc/{process.Id}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private void Signal(string signal, bool paused)
    {
        if (_process is { HasExited: false } process)
        {
            using var kill = Process.Start("kill", [$"-{signal}", process.Id.ToString(CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
            Paused = paused;
        }
    }

    private void Record(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_tail)
        {
            if (LogFolder is { } folder)
            {
                File.AppendAllText(Path.Combine(folder, $"{Name}.log"), $"{DateTime.UtcNow:HH:mm:ss.fff} {line}\n");
            }

            _tail.Enqueue(line);
            if (_tail.Count > 200)
            {
                _tail.Dequeue();
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
        if (Paused)
        {
            Continue();
        }

        await KillAsync();
        _process?.Dispose();
    }
}

/// <summary>A role process exited by itself while starting.</summary>
public sealed class ProcessExitedException(string message) : Exception(message);
