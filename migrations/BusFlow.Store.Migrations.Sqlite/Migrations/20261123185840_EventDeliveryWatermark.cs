using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace BusFlow.Store.Migrations.Sqlite.Migrations
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
                type: "INTEGER",
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

            // SQLite drops the column in place (3.35 and later; its index is gone above), inside the
            // migration's transaction. EF Core's DropColumn rebuilt the table instead, which must run
            // outside a transaction and warned so on every first start of a new database.
            migrationBuilder.Sql("""ALTER TABLE busflow_events DROP COLUMN "DeliveredAt";""");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "DeliveredAt",
                table: "busflow_events",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_DeliveredAt",
                table: "busflow_events",
                column: "DeliveredAt");

            migrationBuilder.Sql("""
                UPDATE busflow_events SET "DeliveredAt" = 0
                WHERE "Position" <= (SELECT "DeliveredUpTo" FROM busflow_leases WHERE "Name" = 'outbox')
                """);

            migrationBuilder.DropColumn(
                name: "DeliveredUpTo",
                table: "busflow_leases");
        }
    }
}
