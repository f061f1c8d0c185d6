using Microsoft.Extensions.Configuration;

namespace BusFlow.Internal;

/// <summary>Reads the settings needed while registering services, with errors that name the setting.</summary>
internal static class BusFlowOptionsReader
{
    public static BusFlowOptions Read(IConfiguration configuration)
    {
        var section = configuration.GetSection(BusFlowOptions.Section);
        var options = new BusFlowOptions();
        try
        {
            section.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(
                $"Invalid BusFlow setting: {e.InnerException?.Message ?? e.Message} Check '{BusFlowOptions.Section}:Transport' (InMemory or RabbitMq) and '{BusFlowOptions.Section}:RabbitMq:*'.", e);
        }

        var transport = section["Transport"];
        if (transport is not null && !(Enum.TryParse<BusFlowTransport>(transport, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed) && !int.TryParse(transport, out _)))
        {
            throw new InvalidOperationException($"Invalid setting '{BusFlowOptions.Section}:Transport' = '{transport}': use InMemory or RabbitMq.");
        }

        if (options.Transport == BusFlowTransport.RabbitMq)
        {
            if (string.IsNullOrWhiteSpace(options.RabbitMq.Host))
            {
                throw new InvalidOperationException($"Setting '{BusFlowOptions.Section}:RabbitMq:Host' is empty; name the RabbitMQ host.");
            }

            if (options.RabbitMq.Port is < 1 or > 65535)
            {
                throw new InvalidOperationException($"Invalid setting '{BusFlowOptions.Section}:RabbitMq:Port' = {options.RabbitMq.Port}: use a port between 1 and 65535.");
            }
        }

        return options;
    }
}
