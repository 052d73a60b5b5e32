
¥
$8b6e0f52-1a3c-4f7d-b2e9-6c0d4a8f3e72
BasicEmailTue, 25 Nov 2025 09:31:12 +0000"notification*notification-producer-7c9d2system:evt-notificationB7682Ju-1002
tenantacme"Ã
%type.googleapis.com/events.BasicEmail™
billing@example.comkenji.sato@example.netInvoice INV-2025-0117"SHello Kenji,

Invoice INV-2025-0117 for November is attached to your account page.
