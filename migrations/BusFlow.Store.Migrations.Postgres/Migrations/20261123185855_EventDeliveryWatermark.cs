using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace BusFlow.Store.Migrations.Postgres.Migrations
{
    /// <inheritdoc />
    public partial class EventDeliveryWatermark : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Delivery is now one position kept in the outbox lease instead of a timestamp rewritten
            // into every event row.
            migrationBuilder.AddColumn<long>(
                name: "DeliveredUpTo",
                table: "busflow_leases",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            // Carry the state over: delivered up to just below the first positioned row not yet
            // delivered, or up to the last position given when every positioned row was delivered.
            migrationBuilder.Sql("""
                UPDATE busflow_leases SET "DeliveredUpTo" = COALESCE(
                    (SELECT MIN("Position") - 1 FROM busflow_events WHERE "Position" IS NOT NULL AND "DeliveredAt" IS NULL),
                    "LastPosition")
                WHERE "Name" = 'outbox'
                """);

            migrationBuilder.DropIndex(
                name: "IX_busflow_events_DeliveredAt",
                table: "busflow_events");

            migrationBuilder.DropColumn(
                name: "DeliveredAt",
                table: "busflow_events");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "DeliveredAt",
                table: "busflow_events",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_DeliveredAt",
                table: "busflow_events",
                column: "DeliveredAt");

            migrationBuilder.Sql("""
                UPDATE busflow_events SET "DeliveredAt" = now()
                WHERE "Position" <= (SELECT "DeliveredUpTo" FROM busflow_leases WHERE "Name" = 'outbox')
                """);

            migrationBuilder.DropColumn(
                name: "DeliveredUpTo",
                table: "busflow_leases");
        }
    }
}
