"""Messages the platform sends on its own, in the guest's language.

The assistant's replies come from the model or the knowledge base; these are the few fixed texts
sent when neither can answer. Language codes are ISO 639-1.
"""

from __future__ import annotations

DEFAULT_LANGUAGE = "en"

# Sent when the model fails (timeout, rate limit, outage): the guest hears from us at once.
HOLDING: dict[str, str] = {
    "en": "Thank you for your message. A member of our team will get back to you shortly.",
    "es": "Gracias por su mensaje. Un miembro de nuestro equipo le responderá en breve.",
    "fr": "Merci pour votre message. Un membre de notre équipe vous répondra très bientôt.",
    "de": "Vielen Dank für Ihre Nachricht. Ein Mitglied unseres Teams meldet sich in Kürze.",
    "it": "Grazie per il suo messaggio. Un membro del nostro staff le risponderà a breve.",
    "pt": "Obrigado pela sua mensagem. Um membro da nossa equipa responderá em breve.",
    "nl": "Bedankt voor uw bericht. Een medewerker neemt zo snel mogelijk contact met u op.",
    "ar": "شكرًا لرسالتك. سيتواصل معك أحد أعضاء فريقنا قريبًا.",
    "zh": "感谢您的留言。我们的工作人员会尽快回复您。",
    "ja": "メッセージをありがとうございます。担当スタッフより折り返しご連絡いたします。",
    "ru": "Спасибо за ваше сообщение. Сотрудник нашей команды скоро ответит вам.",
    "tr": "Mesajınız için teşekkür ederiz. Ekibimizden biri kısa süre içinde size dönüş yapacak.",
}

# Sent when the knowledge base has nothing that answers the question well enough.
HANDOFF: dict[str, str] = {
    "en": "I don't have that information at hand, so I've passed your question to our team. "
    "They will reply here shortly.",
    "es": "No tengo esa información a mano, así que he pasado su pregunta a nuestro equipo. "
    "Le responderán aquí en breve.",
    "fr": "Je n'ai pas cette information sous la main ; j'ai transmis votre question à notre "
    "équipe, qui vous répondra ici très bientôt.",
    "de": "Diese Information habe ich nicht zur Hand. Ich habe Ihre Frage an unser Team "
    "weitergegeben, das Ihnen hier in Kürze antwortet.",
    "it": "Non ho questa informazione a disposizione, quindi ho inoltrato la sua domanda al "
    "nostro staff, che le risponderà qui a breve.",
    "pt": "Não tenho essa informação à mão, por isso passei a sua pergunta à nossa equipa, "
    "que lhe responderá aqui em breve.",
    "nl": "Die informatie heb ik niet bij de hand. Ik heb uw vraag doorgestuurd naar ons team; "
    "zij antwoorden u hier zo snel mogelijk.",
    "ar": "لا تتوفر لدي هذه المعلومة الآن، لذا أحلت سؤالك إلى فريقنا وسيردون عليك هنا قريبًا.",
    "zh": "我暂时没有这方面的信息，已将您的问题转交给我们的团队，他们会尽快在这里回复您。",
    "ja": "その情報は手元にございませんので、ご質問をスタッフに引き継ぎました。まもなくこちらでご返信いたします。",
    "ru": "У меня нет этой информации под рукой, поэтому я передал ваш вопрос нашей команде. "
    "Они скоро ответят вам здесь.",
    "tr": "Bu bilgi şu an elimde değil; sorunuzu ekibimize ilettim. Kısa süre içinde size "
    "buradan yanıt verecekler.",
}

# Sent when the guest asked for a person (the assistant's `handoff_to_staff`).
TRANSFER: dict[str, str] = {
    "en": "Of course. I've passed your conversation to our team; a member of staff will reply "
    "here shortly.",
    "es": "Por supuesto. He pasado su conversación a nuestro equipo; un miembro del personal le "
    "responderá aquí en breve.",
    "fr": "Bien sûr. J'ai transmis votre conversation à notre équipe ; un membre du personnel vous "
    "répondra ici très bientôt.",
    "de": "Selbstverständlich. Ich habe Ihr Anliegen an unser Team weitergegeben; ein Mitarbeiter "
    "antwortet Ihnen hier in Kürze.",
    "it": "Certamente. Ho passato la sua conversazione al nostro staff; qualcuno le risponderà qui "
    "a breve.",
    "pt": "Com certeza. Passei a sua conversa à nossa equipa; um membro do pessoal responderá aqui "
    "em breve.",
    "nl": "Natuurlijk. Ik heb uw gesprek doorgegeven aan ons team; een medewerker antwoordt u hier "
    "zo snel mogelijk.",
    "ar": "بالتأكيد. لقد أحلت محادثتك إلى فريقنا، وسيرد عليك أحد الموظفين هنا قريبًا.",
    "zh": "好的。我已将您的对话转交给我们的团队，工作人员会尽快在这里回复您。",
    "ja": "かしこまりました。会話をスタッフに引き継ぎました。まもなくこちらでご返信いたします。",
    "ru": "Конечно. Я передал ваш разговор нашей команде; сотрудник скоро ответит вам здесь.",
    "tr": "Elbette. Görüşmenizi ekibimize ilettim; bir çalışanımız kısa süre içinde size buradan "
    "yanıt verecek.",
}

SUPPORTED_LANGUAGES = frozenset(HOLDING)


def pick_language(*candidates: str | None) -> str:
    """The first candidate we have texts for, else English."""
    for candidate in candidates:
        if candidate and candidate in SUPPORTED_LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE


def holding_message(language: str) -> str:
    """The holding message in `language` (ISO 639-1), English when we have none in it."""
    return HOLDING[pick_language(language)]


def handoff_message(language: str) -> str:
    """The 'passed to our team' message in `language`, English when we have none in it."""
    return HANDOFF[pick_language(language)]


def transfer_message(language: str) -> str:
    """The 'a person will take over' message in `language`, English when we have none in it."""
    return TRANSFER[pick_language(language)]
