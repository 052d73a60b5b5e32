
∞
$9a4b7c2d-8e1f-4a3b-9c5d-6e7f8a9b0c13MentionEmailGeneratedTue, 25 Nov 2025 09:45:30 +0000"notification*notification-producer-7c9d2system:evt-notificationB7682Ju-1006"’	
0type.googleapis.com/events.MentionEmailGenerated†	
mention_email_generatednotificationmention-generator-2"team-lead@example.org*alerts@example.com2Example Alerts:mention-notification-bulkBˇ
Acme Brand Watch	Broadcast&https://cdn.example.com/brand/logo.png"º
Acme Brand WatchEvening News)https://images.example.com/programs/3.jpg ê¡ó…*5...Acme shares rose four percent after the results...2.https://app.example.com/mentions/4403?invite=1:	BroadcastB&https://cdn.example.com/brand/logo.pngJanalyst@example.comR
a3f9c2e17bZ.https://app.example.com/unsubscribe/a3f9c2e17b"º
Acme Brand WatchTech Today Podcast)https://images.example.com/programs/4.jpg †›ó…*/...a long look at the Acme robot vacuum line...2.https://app.example.com/mentions/4404?invite=1:	BroadcastB&https://cdn.example.com/brand/logo.pngJanalyst@example.comR
a3f9c2e17bZ.https://app.example.com/unsubscribe/a3f9c2e17b"π
Acme Brand WatchSports Talk Live)https://images.example.com/programs/5.jpg ∞˘ó…*....the Acme Arena hosts the final on Sunday...2.https://app.example.com/mentions/4405?invite=1:	BroadcastB&https://cdn.example.com/brand/logo.pngJanalyst@example.comR
a3f9c2e17bZ.https://app.example.com/unsubscribe/a3f9c2e17bJ
handlebars