using System.Net;
using System.Net.Sockets;

namespace BusFlow.Host.Tests;

/// <summary>A process whose start never finishes ends itself at BusFlow:StartTimeout, for its supervisor to start it again.</summary>
public sealed class When_a_start_never_finishes
{
    [Fact]
    public async Task Should_end_the_process_with_an_error_naming_the_setting()
    {
        // A "broker" that takes the connection and never says a word: the bus's start waits on it.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var accepted = new List<Socket>();
        using var stop = new CancellationTokenSource();
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    accepted.Add(await silent.AcceptSocketAsync(stop.Token));
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => RunningHost.StartAsync(new()
        {
            ["BusFlow:Transport"] = "RabbitMq",
            ["BusFlow:RabbitMq:Host"] = "127.0.0.1",
            ["BusFlow:RabbitMq:Port"] = ((IPEndPoint)silent.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["BusFlow:StartTimeout"] = "00:00:10",
        }));

        await stop.CancelAsync();
        await accepting;
        accepted.ForEach(s => s.Dispose());
        Assert.Contains("exited with", error.Message, StringComparison.Ordinal);
        Assert.Contains("BusFlow did not finish starting within 00:00:10 ('BusFlow:StartTimeout')", error.Message, StringComparison.Ordinal);
        Assert.NotEmpty(accepted);
    }
}
