using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

public sealed class ChatTemplateTests
{
    [Fact]
    public void Render_SingleUserTurn_WithGenerationPrompt()
    {
        string prompt = ChatTemplate.Render([new("user", "  Hello there! \n")], addGenerationPrompt: true);

        Assert.Equal("<bos><start_of_turn>user\nHello there!<end_of_turn>\n<start_of_turn>model\n", prompt);
    }

    [Fact]
    public void Render_SystemMessage_PrefixesFirstUserTurnUntrimmed()
    {
        string prompt = ChatTemplate.Render(
            [new("system", "Be brief. "), new("user", "Hi"), new("assistant", " Hello! "), new("user", "Bye")],
            addGenerationPrompt: false);

        Assert.Equal(
            "<bos><start_of_turn>user\nBe brief. \n\nHi<end_of_turn>\n" +
            "<start_of_turn>model\nHello!<end_of_turn>\n" +
            "<start_of_turn>user\nBye<end_of_turn>\n",
            prompt);
    }

    [Fact]
    public void Render_OnlySystemMessage_GivesBosAndPrompt()
    {
        Assert.Equal("<bos><start_of_turn>model\n", ChatTemplate.Render([new("system", "x")], addGenerationPrompt: true));
    }

    [Theory]
    [InlineData("assistant")]
    [InlineData("system")]
    public void Render_FirstTurnNotUser_Throws(string role)
    {
        var e = Assert.Throws<ArgumentException>(() =>
            ChatTemplate.Render([new("system", "s"), new(role, "Hi")], addGenerationPrompt: true));
        Assert.Contains("Conversation roles must alternate", e.Message);
    }

    [Fact]
    public void Render_TwoUserTurnsInARow_Throws()
    {
        Assert.Throws<ArgumentException>(() =>
            ChatTemplate.Render([new("user", "a"), new("user", "b")], addGenerationPrompt: true));
    }

    [Fact]
    public void Render_NoMessages_Throws()
    {
        Assert.Throws<ArgumentException>(() => ChatTemplate.Render([], addGenerationPrompt: true));
    }

    [Fact]
    public void Render_EncodesWithOneBosAndTurnMarkers()
    {
        using var fixture = new TokenizerFolderFixture();
        string prompt = ChatTemplate.Render([new("user", "Hi")], addGenerationPrompt: true);

        int[] ids = fixture.Tokenizer.Encode(prompt, addSpecialTokens: false);

        Assert.Equal(GemmaVocabulary.BosId, ids[0]);
        Assert.Equal(1, ids.Count(id => id == GemmaVocabulary.BosId));
        Assert.Equal(2, ids.Count(id => id == GemmaVocabulary.StartOfTurnId));
        Assert.Equal(prompt, fixture.Tokenizer.Decode(ids));
    }
}
