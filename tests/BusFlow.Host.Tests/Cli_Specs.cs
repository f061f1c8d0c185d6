using System.Diagnostics;
using System.Text.RegularExpressions;

namespace BusFlow.Host.Tests;

/// <summary>The terminal watcher (<c>busflow</c>) as a process against a host process.</summary>
public sealed partial class When_watching_from_the_terminal
{
    [Fact]
    public async Task Should_show_the_events_a_bar_per_step_and_the_result()
    {
        await using var host = await RunningHost.StartAsync();
        var (code, output, _) = await RunAsync(host, null, "start", "demo", "--input", """{"delayMs":30,"progressTicks":2,"flakyStep":"enrich"}""");
        Assert.Equal(0, code);
        Assert.Matches(@"started demo pipeline [0-9a-f-]{36}", output);
        foreach (var step in new[] { "fetch", "clean", "enrich", "merge", "report" })
        {
            Assert.Matches($@"  {step} +\[#{{24}}\] 100% completed", output);
        }

        Assert.Contains("enrich   [------------------------]   0% retrying", output, StringComparison.Ordinal);
        Assert.Contains("PipelineCompleted", output, StringComparison.Ordinal);
        Assert.EndsWith("pipeline completed", output.TrimEnd(), StringComparison.Ordinal);
        AssertGapless(output);
    }

    [Fact]
    public async Task Should_resume_after_the_connection_drops()
    {
        await using var host = await RunningHost.StartAsync();
        var restarted = false;
        var (code, output, _) = await RunAsync(host, async line =>
        {
            if (!restarted && line.Contains("StepCompleted", StringComparison.Ordinal))
            {
                restarted = true;
                await host.KillAsync();
                await host.StartAgainAsync();
            }
        }, "start", "demo", "--input", """{"delayMs":300,"progressTicks":1}""");
        Assert.True(restarted);
        Assert.Equal(0, code);
        AssertGapless(output);
    }

    [Fact]
    public async Task Should_say_plainly_what_is_wrong_with_bad_input()
    {
        await using var host = await RunningHost.StartAsync();
        var (unknown, _, unknownError) = await RunAsync(host, null, "start", "nope");
        Assert.Equal(2, unknown);
        Assert.Contains("No pipeline definition is named 'nope'", unknownError, StringComparison.Ordinal);

        var (invalid, _, invalidError) = await RunAsync(host, null, "start", "wordcount", "--input", """{"texts":3}""");
        Assert.Equal(2, invalid);
        Assert.Contains("'texts' must be array, not number", invalidError, StringComparison.Ordinal);

        var (notJson, _, notJsonError) = await RunAsync(host, null, "start", "demo", "--input", "{oops");
        Assert.Equal(2, notJson);
        Assert.Contains("not JSON", notJsonError, StringComparison.Ordinal);

        var (missing, _, missingError) = await RunAsync(host, null, "watch", Guid.NewGuid().ToString());
        Assert.Equal(2, missing);
        Assert.Contains("pipeline_not_found", missingError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Should_draw_a_live_table_of_the_steps_on_a_terminal()
    {
        await using var host = await RunningHost.StartAsync();
        // A pseudo-terminal (script(1)): the CLI sees a terminal, as a person's shell gives it.
        var command = string.Join(' ', new[] { "dotnet", Cli, "start", "demo", "--input", """{"delayMs":30,"progressTicks":2,"flakyStep":"enrich"}""", "--url", host.BaseUri.ToString() }.Select(Quote));
        var start = new ProcessStartInfo("script", ["-qfec", command, "/dev/null"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["TERM"] = "xterm-256color";
        start.Environment["COLUMNS"] = "120";
        start.Environment["LINES"] = "50";
        using var process = Process.Start(start)!;
        var raw = await process.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token);
        Assert.Equal(0, process.ExitCode);

        // Redrawn in place with escape sequences; without them, the last drawing shows every step done.
        Assert.Contains("\u001b[", raw, StringComparison.Ordinal);
        var text = AnsiPattern().Replace(raw, "");
        Assert.Contains("╭", text, StringComparison.Ordinal);
        foreach (var step in new[] { "fetch", "clean", "enrich", "merge", "report" })
        {
            Assert.Matches($@"│ {step} +│ ━{{24}} 100% │ completed", text);
        }

        Assert.Matches(@"│ enrich +│ ─{24}   0% │ retrying", text);
        Assert.Contains("PipelineCompleted", text, StringComparison.Ordinal);
        Assert.EndsWith("pipeline completed", text.TrimEnd(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Should_show_help_and_a_pipeline_s_steps_and_complete_definitions()
    {
        await using var host = await RunningHost.StartAsync();
        var (help, helpOutput, _) = await RunAsync(host, null, "--help");
        Assert.Equal(0, help);
        foreach (var verb in new[] { "start", "watch", "answer", "cancel", "status" })
        {
            Assert.Matches($@"(?m)^  {verb} ", helpOutput);
        }

        // The shell's completion (dotnet-suggest) asks through the [suggest] directive; definitions come from the edge.
        var line = $"--url {host.BaseUri} start wo";
        var (suggest, suggestions, _) = await RunAsync(host, null, $"[suggest:{line.Length}]", line);
        Assert.Equal(0, suggest);
        Assert.Equal(["wordcount"], suggestions.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        var (started, startOutput, _) = await RunAsync(host, null, "start", "ledger", "--plain");
        Assert.Equal(0, started);
        var id = Regex.Match(startOutput, "started ledger pipeline ([0-9a-f-]{36})").Groups[1].Value;
        // A watch after the end of a finished pipeline says how it ended, at once.
        var (late, lateOutput, _) = await RunAsync(host, null, "watch", id, "--after", "1000", "--plain");
        Assert.Equal(0, late);
        Assert.Equal("pipeline completed", lateOutput.Trim());

        var (status, statusOutput, _) = await RunAsync(host, null, "status", id);
        Assert.Equal(0, status);
        Assert.Contains($"ledger", statusOutput, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^  debit +Completed +attempts 1$", statusOutput);
        Assert.Matches(@"(?m)^  credit +Completed +attempts 1$", statusOutput);

        var (usage, _, usageError) = await RunAsync(host, null, "watch", "not-an-id");
        Assert.Equal(2, usage);
        Assert.Contains("'not-an-id' is not a pipeline id", usageError, StringComparison.Ordinal);
        Assert.Contains("busflow watch --help", usageError, StringComparison.Ordinal);
    }

    private static string Cli
    {
        get
        {
            // The CLI's own build output: its assembly (busflow) is not referenced here, since assembly
            // names are compared without case and it would hide BusFlow's.
            var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
            return Path.Combine(RunningHost.RepositoryRoot, "src", "BusFlow.Cli", "bin", configuration, "net10.0", "busflow.dll");
        }
    }

    private static string Quote(string word) => "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    [GeneratedRegex(@"\u001b\[[0-9;?]*[A-Za-z]|\u001b\][^\u0007]*\u0007|\r")]
    private static partial Regex AnsiPattern();

    private static void AssertGapless(string output)
    {
        var seqs = SeqPattern().Matches(output).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.NotEmpty(seqs);
        Assert.Equal(Enumerable.Range(1, seqs.Count), seqs);
    }

    [GeneratedRegex(@"^\[ *(\d+)\] ", RegexOptions.Multiline)]
    private static partial Regex SeqPattern();

    private static async Task<(int Code, string Output, string Error)> RunAsync(RunningHost host, Func<string, Task>? onLine, params string[] args)
    {
        // A directive ([suggest:N] "<command line>") carries its own command line.
        string[] url = args[0].StartsWith('[') ? [] : ["--url", host.BaseUri.ToString()];
        var start = new ProcessStartInfo("dotnet", [Cli, .. args, .. url])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var output = new List<string>();
        var error = process.StandardError.ReadToEndAsync();
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            output.Add(line);
            if (onLine is not null)
            {
                await onLine(line);
            }
        }

        await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token);
        return (process.ExitCode, string.Join('\n', output), await error);
    }
}
