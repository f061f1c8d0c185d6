namespace BusFlow.Testing;

/// <summary>
/// Where the real servers are, from the environment tests/run.sh sets. Without them a test fails
/// with a message saying how to get them; a developer may opt out with BUSFLOW_SKIP_SERVER_TESTS=1.
/// </summary>
public static class TestServers
{
    public static bool OptedOut => Environment.GetEnvironmentVariable("BUSFLOW_SKIP_SERVER_TESTS") == "1";

    public static Uri RabbitMq => new(Environment.GetEnvironmentVariable("BUSFLOW_TEST_RABBITMQ")
        ?? throw new InvalidOperationException("BUSFLOW_TEST_RABBITMQ is not set: run the tests through tests/run.sh, which installs and starts RabbitMQ (or set BUSFLOW_SKIP_SERVER_TESTS=1 to skip server tests on a developer machine)."));

    public static int RabbitMqManagementPort => int.Parse(Environment.GetEnvironmentVariable("BUSFLOW_RABBITMQ_MANAGEMENT_PORT") ?? "15672", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A fact that needs a real server; skipped only when the developer opted out.</summary>
public sealed class ServerFactAttribute : FactAttribute
{
    public ServerFactAttribute()
    {
        if (TestServers.OptedOut)
        {
            Skip = "BUSFLOW_SKIP_SERVER_TESTS=1: server tests skipped on this developer machine.";
        }
    }
}

/// <summary>A theory that needs a real server; skipped only when the developer opted out.</summary>
public sealed class ServerTheoryAttribute : TheoryAttribute
{
    public ServerTheoryAttribute()
    {
        if (TestServers.OptedOut)
        {
            Skip = "BUSFLOW_SKIP_SERVER_TESTS=1: server tests skipped on this developer machine.";
        }
    }
}
