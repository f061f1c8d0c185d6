using System.Diagnostics;
using System.Text.RegularExpressions;
using BusFlow.Host.Tests.Support;

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
        // The CLI's own build output: its assembly (busflow) is not referenced here, since assembly
        // names are compared without case and it would hide BusFlow's.
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var cli = Path.Combine(RunningHost.RepositoryRoot, "src", "BusFlow.Cli", "bin", configuration, "net10.0", "busflow.dll");
        var start = new ProcessStartInfo("dotnet", [cli, .. args, "--url", host.BaseUri.ToString()])
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
