using System.Diagnostics;

namespace BusFlow.IntegrationTests.Support;

/// <summary>
/// Copies a child process's stdout and stderr, line by line, into a file, so a failed crash test
/// can show what its children were doing (and the file stays for a closer look).
/// </summary>
public sealed class ChildProcessLog : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly Lock _lock = new();

    public ChildProcessLog(string path)
    {
        Path = path;
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        _writer = new StreamWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
    }

    public string Path { get; }

    /// <summary>Starts following the process's redirected output.</summary>
    public void Follow(Process process)
    {
        process.OutputDataReceived += (_, e) => Write(e.Data);
        process.ErrorDataReceived += (_, e) => Write(e.Data is null ? null : "[stderr] " + e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>A line of the test's own, marked so it stands out from the child's.</summary>
    public void Note(string line) => Write($"--- {DateTime.UtcNow:HH:mm:ss.fff} {line}");

    /// <summary>The last lines written so far.</summary>
    public IReadOnlyList<string> Tail(int lines) => Lines().TakeLast(lines).ToList();

    /// <summary>Every line written so far.</summary>
    public IReadOnlyList<string> Lines()
    {
        using var stream = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var lines = new List<string>();
        while (reader.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        return lines;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _writer.Dispose();
        }
    }

    private void Write(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            try
            {
                _writer.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // Output that arrives after the test stopped following the child is dropped.
            }
        }
    }
}
