"""Small texts written for the quality tests (not taken from any corpus).

``GOOD`` is ordinary English prose that passes every Gopher, FineWeb and C4 rule; ``ZH``, ``JA`` and ``TH`` are
ordinary Chinese, Japanese and Thai paragraphs (no spaces between words) that pass the Gopher rules.
"""

GOOD = """The river town grew slowly during the nineteenth century, and its harbor became a busy place for traders.
Merchants from distant regions brought cloth, spices and tools, while local farmers sold grain to the ships.
Over time the council decided that a stone bridge should replace the old wooden crossing near the market.
Engineers studied the currents for two years before they began to build with granite from the northern hills.
When the bridge finally opened, families walked across it to celebrate with music, food and long speeches.
Today historians describe that period as the moment when the town changed from a village into a small city."""

ZH = ("这座小城位于河流的下游，过去主要依靠渔业和农业生活。十九世纪以后，商人从各地来到这里，带来了布料、香料和新的工具。"
      "当地的农民把粮食卖给过往的船只，城市也因此慢慢发展起来。后来，议会决定在市场附近修建一座石桥，代替原来的木桥。"
      "工程师们花了两年时间研究水流，然后才开始用北方山区的花岗岩建造。大桥通车的那天，许多家庭走过桥面，用音乐和美食来庆祝。"
      "今天，历史学家认为那是这个地方从村庄变成城市的重要时刻。")

JA = ("この町は川の下流にあり、昔から漁業と農業で暮らしてきました。十九世紀になると、各地から商人が集まり、布や香辛料や新しい道具を"
      "運んできました。やがて町の議会は、市場の近くに古い木の橋に代わる石の橋を造ることを決めました。技術者たちは二年間かけて川の"
      "流れを調べ、それから北の山の花崗岩で工事を始めました。橋が開通した日には、多くの家族が音楽と料理で祝いました。")

TH = ("เมืองเล็กแห่งนี้ตั้งอยู่ริมแม่น้ำ ผู้คนส่วนใหญ่ทำการเกษตรและการประมง "
      "ในอดีตพ่อค้าจากหลายพื้นที่เดินทางมาค้าขายที่นี่ "
      "ต่อมาสภาเมืองได้ตัดสินใจสร้างสะพานหินแทนสะพานไม้เก่า วิศวกรใช้เวลาสองปีในการศึกษากระแสน้ำก่อนเริ่มก่อสร้าง "
      "เมื่อสะพานเปิดใช้ ครอบครัวจำนวนมากได้มาร่วมฉลองด้วยดนตรีและอาหาร")

#: Chinese junk: one shop slogan repeated (keyword spam)
ZH_SPAM = "低价出售二手手机，" * 30
#: Chinese junk: too short to be a document
ZH_SHORT = "点击这里立即购买"


def vocabulary(n: int) -> list[str]:
    """``n`` distinct made-up lower-case words of 3 to 9 letters (deterministic)."""
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    out = []
    i = 0
    while len(out) < n:
        k, w = i, ""
        for j in range(3 + i % 7):
            w += (consonants if j % 2 == 0 else vowels)[k % (16 if j % 2 == 0 else 5)]
            k //= 16 if j % 2 == 0 else 5
            k += j
        if w not in out and w not in ("the", "be", "to", "of", "and", "that", "have", "with"):
            out.append(w)
        i += 1
    return out
