using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace BusFlow.Testing;

/// <summary>The machine a run was on, and the commit it measured, for the tables in docs/performance.md.</summary>
public static class BenchMachine
{
    /// <summary>The repository's root folder (<see cref="RunningHost.RepositoryRoot"/>).</summary>
    public static string RepositoryRoot => RunningHost.RepositoryRoot;

    public static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary>One line: cores, CPU model, memory, OS, .NET runtime.</summary>
    public static string Describe()
    {
        var model = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU"
            : "unknown CPU";
        var memory = File.Exists("/proc/meminfo")
            ? File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)) is { } line
                ? Invariant($"{long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0 / 1024:0.0} GiB")
                : "?"
            : "?";
        return Invariant($"{Environment.ProcessorCount} cores ({model}), {memory} memory, {RuntimeInformation.OSDescription}, .NET {Environment.Version}");
    }

    /// <summary>The commit checked out (short id, "+ local changes" when the work tree differs from it outside docs/performance.md).</summary>
    public static string Commit()
    {
        var head = Git("rev-parse --short HEAD");
        // The tables a run writes into docs/performance.md are not a change to what it measures.
        var dirty = Git("status --porcelain --untracked-files=no -- . :!docs/performance.md");
        return head is null ? "unknown commit" : dirty is { Length: > 0 } ? head + " + local changes" : head;
    }

    /// <summary>
    /// Replaces what lies between <c>&lt;!-- NAME:begin --&gt;</c> and <c>&lt;!-- NAME:end --&gt;</c> in
    /// docs/<paramref name="document"/> with <paramref name="markdown"/>; appends the markers at the end when missing.
    /// </summary>
    public static string WriteSection(string name, string markdown, string document = "performance.md")
    {
        var path = Path.Combine(RepositoryRoot, "docs", document);
        var text = File.Exists(path) ? File.ReadAllText(path) : "";
        var begin = $"<!-- {name}:begin -->";
        var end = $"<!-- {name}:end -->";
        var block = begin + "\n" + markdown.TrimEnd() + "\n" + end;
        var pattern = new Regex(Regex.Escape(begin) + ".*?" + Regex.Escape(end), RegexOptions.Singleline);
        text = pattern.IsMatch(text) ? pattern.Replace(text, _ => block, 1) : text.TrimEnd() + "\n\n" + block + "\n";
        File.WriteAllText(path, text, new UTF8Encoding(false));
        return path;
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string? Git(string arguments)
    {
        try
        {
            var start = new ProcessStartInfo("git", arguments) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepositoryRoot };
            using var git = Process.Start(start);
            if (git is null)
            {
                return null;
            }

            var output = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
