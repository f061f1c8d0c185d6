using BusFlow.IntegrationTests.Support;

namespace BusFlow.IntegrationTests;

/// <summary>
/// Test runners never call this. The crash tests start this assembly as a child process
/// (<c>dotnet BusFlow.IntegrationTests.dll crash-target</c>) and kill it at random moments.
/// </summary>
public static class Program
{
    public static Task<int> Main(string[] args) =>
        args is ["crash-target", ..] ? CrashTarget.RunAsync() : Task.FromResult(Usage());

    private static int Usage()
    {
        Console.Error.WriteLine("usage: dotnet BusFlow.IntegrationTests.dll crash-target (settings from BUSFLOW_CRASH_* variables)");
        return 2;
    }
}
