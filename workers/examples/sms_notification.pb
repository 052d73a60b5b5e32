
ª
$e2f8a1b3-7c4d-4a9e-8f1b-2d3c4e5f6a95SMSNotificationTue, 25 Nov 2025 09:33:05 +0000"notification*notification-producer-7c9d2system:evt-notificationB7682Ju-1004"ª
*type.googleapis.com/events.SMSNotification|
"MG9752274e9e519418a7406176694466fa+447700900123GReminder: your appointment is tomorrow at 10:00. Reply STOP to opt out.