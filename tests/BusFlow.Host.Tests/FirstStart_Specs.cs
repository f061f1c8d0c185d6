
namespace BusFlow.Host.Tests;

/// <summary>The first <c>dotnet run --project src/BusFlow.Host</c> on a machine: a new SQLite file, every migration applied.</summary>
public sealed class When_the_host_starts_on_a_new_database
{
    [Fact]
    public async Task Should_print_no_warning_but_the_one_about_running_without_auth()
    {
        await using var host = await RunningHost.StartAsync();
        var warnings = host.Output.Split('\n').Select((line, i) => (line, i)).Where(l => l.line.StartsWith("warn:", StringComparison.Ordinal) || l.line.StartsWith("fail:", StringComparison.Ordinal)).ToList();
        var lines = host.Output.Split('\n');
        // The edge's notice that auth is off is meant to be seen at every start; nothing else is.
        Assert.All(warnings, w => Assert.Contains("WITHOUT authentication", w.i + 1 < lines.Length ? lines[w.i + 1] : "", StringComparison.Ordinal));
        Assert.DoesNotContain("migration", host.Output, StringComparison.OrdinalIgnoreCase);
    }
}
