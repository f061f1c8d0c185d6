using BusFlow.IntegrationTests.Support;

namespace BusFlow.IntegrationTests;

/// <summary>
/// Test runners never call this. The crash tests start this assembly as a child process
/// (<c>dotnet BusFlow.IntegrationTests.dll crash-target</c>) and kill it at random moments; the
/// failed-start spec starts it as a process whose start fails after its bus started (<c>failed-start</c>).
/// </summary>
public static class Program
{
    public static Task<int> Main(string[] args) =>
        args switch
        {
            ["crash-target", ..] => CrashTarget.RunAsync(),
            ["failed-start", ..] => FailedStartTarget.RunAsync(),
            _ => Task.FromResult(Usage()),
        };

    private static int Usage()
    {
        Console.Error.WriteLine("usage: dotnet BusFlow.IntegrationTests.dll crash-target | failed-start (settings from BUSFLOW_CRASH_* or BUSFLOW_FAILED_START_* variables)");
        return 2;
    }
}
